package config

import (
	"strings"
	"testing"
)

func TestConflictPoliciesAndForward(t *testing.T) {
	t.Setenv("LYON_PASSWORD", "s3cret")
	t.Setenv("GOREPLICA_SMTP_PASSWORD", "smtp-s3cret")
	cfg, err := Load("../sample.toml")
	if err != nil {
		t.Fatal(err)
	} else if cfg.Replicate.OnConflict != "stop" || cfg.Replicate.OnConflictTables["public.stock"] != "resync" || !cfg.Slaves[0].Forwards() {
		t.Errorf("sample: on_conflict %q, tables %v, forward %v", cfg.Replicate.OnConflict, cfg.Replicate.OnConflictTables, cfg.Slaves[0].Forward)
	}
	base := "[master]\nname = \"a\"\ndsn = \"host=x\"\n[[slave]]\nname = \"b\"\ndsn = \"host=y\"\nforward = false\n"
	cfg, err = Parse(base)
	if err != nil || cfg.Replicate.OnConflict != "stop" || cfg.Slaves[0].Forwards() {
		t.Errorf("defaults: %v, on_conflict %q, forward %v", err, cfg.Replicate.OnConflict, cfg.Slaves[0].Forward)
	}
	_, err = Parse(base + "[replicate]\non_conflict = \"ignore\"\n[replicate.on_conflict_tables]\n\"orders\" = \"skip\"\n\"public.t\" = \"merge\"\n")
	for _, want := range []string{
		`replicate.on_conflict: "ignore" is not a policy (one of stop, skip, resync)`,
		`replicate.on_conflict_tables."orders": must be schema.table`,
		`replicate.on_conflict_tables."public.t": "merge" is not a policy`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error does not contain %q:\n%v", want, err)
		}
	}
}
