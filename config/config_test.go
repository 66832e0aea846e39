package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSampleDecodesStrictly(t *testing.T) {
	t.Setenv("LYON_PASSWORD", "s3cret")
	t.Setenv("GOREPLICA_SMTP_PASSWORD", "smtp-s3cret")
	cfg, err := Load("../sample.toml")
	if err != nil {
		t.Fatalf("sample.toml: %v", err)
	}
	if cfg.Master.Name != "paris" || len(cfg.Slaves) != 1 || cfg.Slaves[0].Name != "lyon" {
		t.Fatalf("sample.toml decoded to %+v", cfg)
	}
	if !strings.Contains(cfg.Slaves[0].DSN.Reveal(), "password=s3cret") {
		t.Errorf("${LYON_PASSWORD} not expanded: %s", cfg.Slaves[0].DSN)
	}
	if strings.Contains(cfg.Slaves[0].DSN.String(), "s3cret") {
		t.Errorf("printed DSN shows the password: %s", cfg.Slaves[0].DSN)
	}
	if cfg.Metrics == nil || cfg.Metrics.Listen != "127.0.0.1:9187" {
		t.Errorf("sample [metrics]: %+v", cfg.Metrics)
	}
	if cfg.Replicate.PollInterval.Duration != time.Second || !cfg.Slaves[0].UsesTwoPhase() ||
		strings.Join(cfg.Replicate.Sequences, ",") != "public.*" {
		t.Errorf("sample values: %+v", cfg.Replicate)
	}
}

func TestEveryProblemReportedWithItsPath(t *testing.T) {
	_, err := Parse(`
[master]
name = "Paris!"
colour = "blue"
[[slave]]
name = "lyon"
[[slave]]
name = "lyon"
dsn = "x"
[replicate]
poll_interval = 5
batch_interval = "-1ms"
tables = ["orders"]
sequences = ["public.*", "orders_id_seq"]
`)
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		`master.colour: unknown key`,
		`master.name: "Paris!" must be`,
		`master.dsn: required`,
		`slave "lyon".dsn: required`,
		`slave[1].name: "lyon" is also the name of slave[0]`,
		`replicate.tables[0]: "orders" must be schema.table`,
		`replicate.sequences[1]: "orders_id_seq" must be schema.sequence`,
		`replicate.poll_interval: 5 is not a duration`,
		`replicate.batch_interval: must not be negative`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not contain %q:\n%v", want, err)
		}
	}
	_, err = Parse("[replicate]\npoll_interval = \"5 seconds\"\n")
	if err == nil || !strings.Contains(err.Error(), `replicate.poll_interval: "5 seconds" is not a duration`) {
		t.Errorf("a malformed duration: %v", err)
	}
}

func TestSecretsFromEnvAndFiles(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("it's a \\ secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse(`
[master]
name = "paris"
dsn = "host=a dbname=b"
password_file = "` + pw + `"
[[slave]]
name = "lyon"
dsn = "postgres://u@h/db?sslmode=disable"
password_file = "` + pw + `"
`)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Master.DSN.Reveal(); got != `host=a dbname=b password='it\'s a \\ secret'` {
		t.Errorf("master dsn = %s", got)
	}
	if got := cfg.Slaves[0].DSN.Reveal(); !strings.HasSuffix(got, "&password=it%27s%20a%20%5C%20secret") {
		t.Errorf("slave dsn = %s", got)
	}
	for _, s := range []Secret{cfg.Master.DSN, cfg.Slaves[0].DSN} {
		if strings.Contains(s.String(), "secret") {
			t.Errorf("masked DSN shows the password: %s", s)
		}
	}
	_, err = Parse("[master]\nname = \"p\"\ndsn = \"password=${NOPE_NOT_SET}\"\n[[slave]]\nname=\"s\"\ndsn=\"x\"\n")
	if err == nil || !strings.Contains(err.Error(), "master.dsn: environment variable NOPE_NOT_SET is not set") {
		t.Errorf("unset variable: %v", err)
	}
}

func TestMaskDSN(t *testing.T) {
	tests := []struct{ in, want string }{
		{"host=a password=secret dbname=b", "host=a password=xxxxx dbname=b"},
		{"host=a password = 'se cret' dbname=b", "host=a password = xxxxx dbname=b"},
		{"postgres://user:secret@host/db", "postgres://user:xxxxx@host/db"},
		{"postgres://host/db?password=secret", "postgres://host/db?password=xxxxx"},
		{"host=a dbname=b", "host=a dbname=b"},
	}
	if got := Secret("hunter2").String(); got != "xxxxx" {
		t.Errorf("a bare secret prints as %q", got)
	}
	for _, tt := range tests {
		if got := MaskDSN(tt.in); got != tt.want {
			t.Errorf("MaskDSN(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestMetricsSection(t *testing.T) {
	base := "[master]\nname = \"m\"\ndsn = \"dbname=m\"\n[[slave]]\nname = \"s\"\ndsn = \"dbname=s\"\n"
	cfg, err := Parse(base)
	if err != nil || cfg.Metrics != nil {
		t.Fatalf("without [metrics]: %v, %+v", err, cfg)
	}
	for _, bad := range []string{`listen = "9187"`, `listen = "127.0.0.1:http"`, `listen = ""`, `listen = ":0"`, `lisen = ":9187"`} {
		if _, err := Parse(base + "[metrics]\n" + bad + "\n"); err == nil || !strings.Contains(err.Error(), "metrics.") {
			t.Errorf("[metrics] %s: %v, want an error naming metrics.", bad, err)
		}
	}
	if cfg, err := Parse(base + "[metrics]\nlisten = \":9187\"\n"); err != nil || cfg.Metrics.Listen != ":9187" {
		t.Errorf("listen = \":9187\": %v", err)
	}
}
