package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var allVerbs = []string{"init", "run", "status", "check", "conflicts", "skip", "unregister", "uninstall", "trigger", "version", "service", "mail-test", "demo"}

func TestHelpListsVerbs(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{nil, {"help"}, {"-h"}, {"--help"}} {
		r := goreplica(t, nil, args...)
		if r.code != 0 {
			t.Errorf("expected exit 0\n%s", r)
		}
		for _, v := range allVerbs {
			if !strings.Contains(r.stdout, "\n  "+v+" ") {
				t.Errorf("help does not list verb %q\n%s", v, r)
			}
		}
		if !strings.Contains(r.stdout, "-c FILE") || !strings.Contains(r.stdout, "GOREPLICA_CONFIG") {
			t.Errorf("help does not say how to pass the configuration\n%s", r)
		}
	}
}

func TestUnknownVerb(t *testing.T) {
	t.Parallel()
	r := goreplica(t, nil, "frobnicate")
	if r.code != 2 {
		t.Errorf("exit %d, want 2\n%s", r.code, r)
	}
	for _, want := range []string{`unknown verb "frobnicate"`, "goreplica help"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q\n%s", want, r)
		}
	}
	if r.stdout != "" {
		t.Errorf("a usage error printed on stdout\n%s", r)
	}
}

func TestUnknownFlag(t *testing.T) {
	t.Parallel()
	r := goreplica(t, nil, "status", "--frobnicate")
	if r.code != 2 {
		t.Errorf("exit %d, want 2\n%s", r.code, r)
	}
	if !strings.Contains(r.stderr, "frobnicate") {
		t.Errorf("stderr does not name the bad flag\n%s", r)
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	r := mustRun(t, nil, "version")
	if !strings.HasPrefix(r.stdout, "goreplica ") || strings.Count(r.stdout, "\n") != 1 {
		t.Errorf("version prints %q, want one line \"goreplica <version>\"", r.stdout)
	}
}

func TestTriggerPrintsInstalledSQL(t *testing.T) {
	t.Parallel()
	r := mustRun(t, nil, "trigger")
	if !strings.Contains(r.stdout, "CREATE SCHEMA IF NOT EXISTS replica") {
		t.Errorf("trigger output lacks CREATE SCHEMA IF NOT EXISTS replica\n%s", r)
	}
	want, err := os.ReadFile(filepath.Join("..", "trigger.sql"))
	if err != nil {
		t.Fatal(err)
	}
	if r.stdout != string(want) {
		t.Errorf("goreplica trigger prints %d bytes that differ from trigger.sql (%d bytes)", len(r.stdout), len(want))
	}
}

func TestConfigProblemsReportedAtOnce(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		toml string
		want []string
	}{
		{
			name: "unknown key, bad duration, missing dsn",
			toml: `[master]
name = "m"
dsn = "host=127.0.0.1 dbname=x"
colour = "blue"

[[slave]]
name = "s1"

[replicate]
poll_interval = "5 parsecs"
`,
			want: []string{"master.colour", "unknown key", "replicate.poll_interval", "5 parsecs", `slave "s1".dsn`, "required"},
		},
		{
			name: "unknown key and missing dsn",
			toml: `[master]
name = "m"
dsn = "host=127.0.0.1 dbname=x"

[[slave]]
name = "s1"
tow_phase = true
`,
			want: []string{"slave.tow_phase", "unknown key", `slave "s1".dsn`, "required"},
		},
		{
			name: "duration as a bare integer",
			toml: `[master]
name = "m"
dsn = "host=127.0.0.1 dbname=x"

[[slave]]
name = "s1"
dsn = "host=127.0.0.1 dbname=y"

[replicate]
max_backoff = 30
`,
			want: []string{"replicate.max_backoff"},
		},
		{
			name: "batch bounds",
			toml: `[master]
name = "m"
dsn = "host=127.0.0.1 dbname=x"

[[slave]]
name = "s1"
dsn = "host=127.0.0.1 dbname=y"

[replicate]
batch_events = 0
batch_bytes = "lots"
`,
			want: []string{"replicate.batch_events: must be at least 1", "replicate.batch_bytes", "lots"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := writeFile(t, "bad.toml", tc.toml)
			for _, verb := range []string{"status", "init", "run"} {
				r := goreplica(t, nil, verb, "-c", cfg)
				if r.code == 0 {
					t.Errorf("exit 0 with a bad configuration\n%s", r)
				}
				for _, w := range tc.want {
					if !strings.Contains(r.stderr, w) {
						t.Errorf("%s: stderr lacks %q\n%s", verb, w, r)
					}
				}
				if !strings.Contains(r.stderr, cfg) {
					t.Errorf("%s: the error does not name the file\n%s", verb, r)
				}
			}
		})
	}
}

func TestMissingConfigFile(t *testing.T) {
	t.Parallel()
	missing := filepath.Join(t.TempDir(), "nowhere", "goreplica.toml")
	for _, tc := range []struct {
		name string
		env  []string
		args []string
	}{
		{"flag", nil, []string{"status", "-c", missing}},
		{"environment", []string{"GOREPLICA_CONFIG=" + missing}, []string{"status"}},
	} {
		r := goreplica(t, tc.env, tc.args...)
		if r.code == 0 {
			t.Errorf("%s: exit 0 without a configuration\n%s", tc.name, r)
		}
		for _, want := range []string{missing, "-c FILE", "GOREPLICA_CONFIG"} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("%s: stderr lacks %q\n%s", tc.name, want, r)
			}
		}
	}
}

// TestConfigFromEnvironment: without -c, $GOREPLICA_CONFIG is read.
func TestConfigFromEnvironment(t *testing.T) {
	t.Parallel()
	ms, ss := servers(t)
	master, slave := newDB(t, ms, "env_master"), newDB(t, ss, "env_slave")
	execAll(t, `CREATE TABLE t (id int PRIMARY KEY)`, master, slave)
	cfg := writeConfig(t, configFile{master: node{name: "m", dsn: master.dsn()}, slaves: []node{{name: "s", dsn: slave.dsn()}}})
	env := []string{"GOREPLICA_CONFIG=" + cfg}
	mustRun(t, env, "init")
	r := statusRun(t, env, "status") // exit 4: no daemon runs
	if !strings.Contains(r.stdout, "master m:") {
		t.Errorf("status did not read $GOREPLICA_CONFIG\n%s", r)
	}
}

func TestInitTwiceChangesNothing(t *testing.T) {
	t.Parallel()
	ms, ss := servers(t)
	master := newDB(t, ms, "init2_master")
	slaves := []database{newDB(t, ss, "init2_a"), newDB(t, ss, "init2_b")}
	const schema = `
CREATE TABLE items (id int PRIMARY KEY, name text);
CREATE TABLE "Odd Name" (k text PRIMARY KEY, v jsonb);
CREATE TABLE nokey (v int);`
	execAll(t, schema, append([]database{master}, slaves...)...)
	cfg := writeConfig(t, configFile{
		master: node{name: "m", dsn: master.dsn()},
		slaves: []node{{name: "a", dsn: slaves[0].dsn()}, {name: "b", dsn: slaves[1].dsn(), twoPhase: boolp(false)}},
	})
	first := mustRun(t, nil, "init", "-c", cfg)
	for _, want := range []string{"items", `"Odd Name"`, "nokey", "no primary key", "a, b"} {
		if !strings.Contains(first.stdout, want) {
			t.Errorf("init output lacks %q\n%s", want, first)
		}
	}
	dbs := append([]database{master}, slaves...)
	before := map[string][]string{}
	for _, d := range dbs {
		before[d.name] = catalogObjects(t, d)
	}
	if len(before[master.name]) == 0 {
		t.Fatalf("init installed nothing on the master")
	}
	regBefore := registrations(t, master)

	second := mustRun(t, nil, "init", "-c", cfg)
	// Only the first says how the tables new to each slave get their rows.
	if !strings.Contains(first.stdout, "slave b: public.items: no copy, the slave holds its rows (copy = skip)") {
		t.Errorf("init does not say how the slave gets its rows\n%s", first)
	}
	var firstOut []string
	for _, l := range strings.Split(first.stdout, "\n") {
		if !strings.HasPrefix(l, "slave a: ") && !strings.HasPrefix(l, "slave b: ") {
			firstOut = append(firstOut, l)
		}
	}
	if second.stdout != strings.Join(firstOut, "\n") || second.stderr != first.stderr {
		t.Errorf("init run twice prints differently\nfirst:\n%s\nsecond:\n%s", first, second)
	}
	for _, d := range dbs {
		if after := catalogObjects(t, d); strings.Join(after, "\n") != strings.Join(before[d.name], "\n") {
			t.Errorf("database %s: second init changed the catalog\nbefore:\n%s\nafter:\n%s", d.name,
				strings.Join(before[d.name], "\n"), strings.Join(after, "\n"))
		}
	}
	if regAfter := registrations(t, master); regAfter != regBefore {
		t.Errorf("second init changed the slaves' registration\nbefore: %s\nafter:  %s", regBefore, regAfter)
	}
}

// registrations returns the slaves' registered positions on the master.
func registrations(t *testing.T, master database) string {
	t.Helper()
	var s string
	err := master.db.QueryRow(`SELECT string_agg(name || ' ' || acked_snapshot::text || ' ' || acked_batch, '; ' ORDER BY name) FROM replica.slaves`).Scan(&s)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestInitRefusesSlaveThatDiffers(t *testing.T) {
	t.Parallel()
	ms, ss := servers(t)
	master := newDB(t, ms, "diff_master")
	lacking, retyped := newDB(t, ss, "diff_lacking"), newDB(t, ss, "diff_retyped")
	execAll(t, `CREATE TABLE orders (id int PRIMARY KEY, total numeric); CREATE TABLE customers (id int PRIMARY KEY, name text)`, master)
	execAll(t, `CREATE TABLE orders (id int PRIMARY KEY, total numeric)`, lacking)
	execAll(t, `CREATE TABLE orders (id int PRIMARY KEY, total int); CREATE TABLE customers (id int PRIMARY KEY, name text)`, retyped)
	cfg := writeConfig(t, configFile{
		master:   node{name: "m", dsn: master.dsn()},
		slaves:   []node{{name: "lacking", dsn: lacking.dsn()}, {name: "retyped", dsn: retyped.dsn()}},
		noCreate: true,
	})
	r := goreplica(t, nil, "init", "-c", cfg)
	if r.code == 0 {
		t.Fatalf("init succeeded with slaves that differ from the master\n%s", r)
	}
	// Both problems at once, each naming the slave and the table.
	for _, want := range []string{"slave lacking", "customers", "does not exist", "slave retyped", "orders", "total"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("init's error lacks %q\n%s", want, r)
		}
	}
	for _, d := range []database{master, lacking, retyped} {
		if hasReplicaSchema(t, d) {
			t.Errorf("database %s: schema replica installed by a failed init", d.name)
		}
		if n := userTriggers(t, d); n != 0 {
			t.Errorf("database %s: %d triggers installed by a failed init", d.name, n)
		}
	}
}

func TestUninstall(t *testing.T) {
	t.Parallel()
	ctx := testContext(t, 90*time.Second)
	ms, ss := servers(t)
	master := newDB(t, ms, "uninst_master")
	slaves := []database{newDB(t, ss, "uninst_a"), newDB(t, ss, "uninst_b")}
	all := append([]database{master}, slaves...)
	execAll(t, `CREATE TABLE t (id int PRIMARY KEY, v text); CREATE TABLE u (id int PRIMARY KEY)`, all...)
	cfg := writeConfig(t, configFile{
		master: node{name: "m", dsn: master.dsn()},
		slaves: []node{{name: "a", dsn: slaves[0].dsn()}, {name: "b", dsn: slaves[1].dsn(), twoPhase: boolp(false)}},
	})
	mustRun(t, nil, "init", "-c", cfg)
	d := startDaemon(t, cfg)
	execAll(t, `INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 50) g; INSERT INTO u VALUES (1)`, master)
	waitConverged(ctx, t, master, slaves, "t", "u")
	// Not while the daemon applies: it would retry for ever.
	if r := goreplica(t, nil, "uninstall", "--yes", "-c", cfg); r.code != 1 || !strings.Contains(r.stderr, "a daemon is applying to slave a, b") {
		t.Errorf("uninstall --yes with the daemon running: want exit 1 naming the slaves\n%s", r)
	}
	for _, db := range all {
		if !hasReplicaSchema(t, db) {
			t.Fatalf("database %s: uninstall --yes with the daemon running removed schema replica", db.name)
		}
	}
	d.stop()

	r := goreplica(t, nil, "uninstall", "-c", cfg)
	if r.code != 2 {
		t.Errorf("uninstall without --yes: exit %d, want 2\n%s", r.code, r)
	}
	if !strings.Contains(r.stderr, "--yes") {
		t.Errorf("uninstall without --yes does not say how to confirm\n%s", r)
	}
	for _, db := range all {
		if !hasReplicaSchema(t, db) {
			t.Fatalf("database %s: uninstall without --yes removed schema replica", db.name)
		}
	}

	mustRun(t, nil, "uninstall", "--yes", "-c", cfg)
	for _, db := range all {
		if hasReplicaSchema(t, db) {
			t.Errorf("database %s: schema replica still there after uninstall --yes", db.name)
		}
		if objs := catalogObjects(t, db); len(objs) != 0 {
			t.Errorf("database %s: left after uninstall --yes:\n%s", db.name, strings.Join(objs, "\n"))
		}
	}
	// The application goes on writing without goreplica.
	execAll(t, `INSERT INTO t VALUES (51, 'after'); UPDATE t SET v = 'x' WHERE id = 1; DELETE FROM u`, master)
}

// TestCommandLineEdges: what a new user types first works as they expect.
func TestCommandLineEdges(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"run", "--help"}, {"help", "run"}, {"run", "-h"}} {
		r := goreplica(t, nil, args...)
		if r.code != 0 || !strings.HasPrefix(r.stdout, "usage: goreplica run ") || !strings.Contains(r.stdout, "-service") ||
			strings.Contains(r.stdout+r.stderr, "help requested") {
			t.Errorf("want run's usage on stdout, exit 0\n%s", r)
		}
	}
	if r := mustRun(t, nil, "--version"); !strings.HasPrefix(r.stdout, "goreplica ") {
		t.Errorf("--version\n%s", r)
	}
	missing := filepath.Join(t.TempDir(), "nowhere.toml")
	if r := goreplica(t, nil, "-c", missing, "status"); r.code != 1 || !strings.Contains(r.stderr, missing) {
		t.Errorf("-c FILE before the verb is not passed to it\n%s", r)
	}
	if r := goreplica(t, nil, "-c", missing, "version"); r.code != 2 {
		t.Errorf("-c FILE before a verb that takes none: want exit 2\n%s", r)
	}
	if r := goreplica(t, nil, "stauts"); r.code != 2 || !strings.Contains(r.stderr, `did you mean "status"?`) {
		t.Errorf("typo: want a suggestion\n%s", r)
	}
	if r := mustRun(t, nil, "demo", "--help"); strings.Contains(r.stdout, "-c ") || !strings.Contains(r.stdout, "-duration") {
		t.Errorf("demo --help lists -c or lacks -duration\n%s", r)
	}
	r := goreplica(t, []string{"GOREPLICA_CONFIG=" + missing}, "service", "print-unit")
	if r.code != 1 || !strings.Contains(r.stderr, "pass -c FILE or set GOREPLICA_CONFIG") {
		t.Errorf("service print-unit without a configuration lacks the hint\n%s", r)
	}
	for _, v := range []string{"check", "unregister"} {
		if r := mustRun(t, nil, "help", v); !strings.HasPrefix(r.stdout, "usage: goreplica "+v) {
			t.Errorf("help %s\n%s", v, r)
		}
	}
}
