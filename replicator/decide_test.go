package replicator

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestDecideInDoubt(t *testing.T) {
	const m = "0b1e6a2c-8d7f-4c3e-9a51-2f6b7c8d9e0f"
	tests := []struct {
		name   string
		gid    string
		action inDoubtAction
		batch  int64
	}{
		{"ours", gid(m, "lyon", 42), inDoubtCommit, 42},
		{"other slave", gid(m, "nice", 42), inDoubtIgnore, 0},
		{"slave name is a prefix of ours", gid(m, "lyon2", 42), inDoubtIgnore, 0},
		{"other master", gid("11111111-1111-1111-1111-111111111111", "lyon", 42), inDoubtIgnore, 0},
		{"not goreplica", "pgx-42", inDoubtIgnore, 0},
		{"garbage batch", gidPrefix(m, "lyon") + "x", inDoubtIgnore, 0},
		{"zero batch", gidPrefix(m, "lyon") + "0", inDoubtIgnore, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := decideInDoubt(tt.gid, m, "lyon")
			if a != tt.action || b != tt.batch {
				t.Fatalf("decideInDoubt(%q) = %v, %d; want %v, %d", tt.gid, a, b, tt.action, tt.batch)
			}
		})
	}
}

func TestGIDFitsAndDiffers(t *testing.T) {
	m := "0b1e6a2c-8d7f-4c3e-9a51-2f6b7c8d9e0f"
	long := "a23456789012345678901234567890123456789012345678901234567890123"
	g := gid(m, long, 1<<62)
	if len(g) >= 200 {
		t.Fatalf("GID %q is %d bytes; PostgreSQL allows 199", g, len(g))
	}
	if gid(m, "a", 1) == gid(m, "b", 1) || gid(m, "a", 1) == gid(m, "a", 2) {
		t.Fatal("GIDs of different slaves or batches collide")
	}
}

func TestBackoff(t *testing.T) {
	tests := []struct {
		attempt int
		max     time.Duration
		want    time.Duration
	}{
		{1, 30 * time.Second, 250 * time.Millisecond},
		{2, 30 * time.Second, 500 * time.Millisecond},
		{5, 30 * time.Second, 4 * time.Second},
		{8, 30 * time.Second, 30 * time.Second},
		{1000, 30 * time.Second, 30 * time.Second},
		{3, 300 * time.Millisecond, 300 * time.Millisecond},
	}
	for _, tt := range tests {
		if got := backoff(tt.attempt, tt.max); got != tt.want {
			t.Errorf("backoff(%d, %s) = %s, want %s", tt.attempt, tt.max, got, tt.want)
		}
	}
}

func TestMatchTable(t *testing.T) {
	tests := []struct {
		pattern, name string
		want          bool
	}{
		{"public.*", "public.orders", true},
		{"public.*", "sales.orders", false},
		{"public.orders", "public.orders", true},
		{"public.orders", "public.orders2", false},
		{"*.orders", "sales.orders", true},
		{"public.order*", "public.orders_2024", true},
		{"public.*_log", "public.audit_log", true},
		{"public.*_log", "public.audit_logs", false},
		{"*", "x.y", true},
		{"Public.*", "public.t", false},
		{"public.[a]", "public.[a]", true},
		{"public.a*b*c", "public.aXbYc", true},
		{"public.a*b*c", "public.aXcYb", false},
	}
	for _, tt := range tests {
		if got := matchTable(tt.pattern, tt.name); got != tt.want {
			t.Errorf("matchTable(%q, %q) = %v, want %v", tt.pattern, tt.name, got, tt.want)
		}
	}
}

func TestSelectTables(t *testing.T) {
	all := []Table{
		{Schema: "public", Name: "a", hasKey: true},
		{Schema: "public", Name: "nokey"},
		{Schema: "public", Name: "skip_me", hasKey: true},
		{Schema: "sales", Name: "b", hasKey: true},
		{Schema: "sales", Name: "m", hasKey: true, partitioned: true},
		{Schema: "sales", Name: "m_2026", hasKey: true},
	}
	tests := []struct {
		name             string
		include, exclude []string
		want             []string
		warnings         int
		wantErr          bool
	}{
		{"pattern skips keyless with warning", []string{"public.*"}, []string{"public.skip*"}, []string{"a"}, 1, false},
		{"exact keyless is an error", []string{"public.nokey"}, nil, nil, 0, true},
		{"exact missing is an error", []string{"public.nope"}, nil, nil, 0, true},
		{"several patterns", []string{"public.a", "sales.b"}, nil, []string{"a", "b"}, 0, false},
		{"a pattern takes partitions, not their parent", []string{"sales.*"}, nil, []string{"b", "m_2026"}, 0, false},
		{"exact partitioned table is an error", []string{"sales.m"}, nil, nil, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, warns, err := selectTables(all, tt.include, tt.exclude)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			var names []string
			for _, g := range got {
				names = append(names, g.Name)
			}
			if len(names) != len(tt.want) || len(warns) != tt.warnings {
				t.Fatalf("got %v (warnings %v), want %v and %d warnings", names, warns, tt.want, tt.warnings)
			}
			for i := range names {
				if names[i] != tt.want[i] {
					t.Fatalf("got %v, want %v", names, tt.want)
				}
			}
		})
	}
}

func TestClassifyConflict(t *testing.T) {
	tests := []struct {
		op   byte
		n    int64
		want ConflictKind
	}{
		{'I', 0, InsertExists},
		{'U', 0, UpdateMissing},
		{'D', 0, DeleteMissing},
		{'U', 2, MultipleRows},
	}
	for _, tt := range tests {
		if got := classifyConflict(tt.op, tt.n); got != tt.want {
			t.Errorf("classifyConflict(%c, %d) = %s, want %s", tt.op, tt.n, got, tt.want)
		}
	}
}

func TestKeyOf(t *testing.T) {
	tests := []struct{ sql, want string }{
		{`UPDATE public.t SET v = 'x' WHERE id = '1'`, `id = '1'`},
		{`DELETE FROM public.t WHERE a = 'x' AND b = '2'`, `a = 'x' AND b = '2'`},
		{`INSERT INTO public.t (id, v) VALUES ('1', ' WHERE ') ON CONFLICT DO NOTHING`, `('1', ' WHERE ')`},
		{`INSERT INTO public.t (id, v) VALUES ('1', ' WHERE ') ON CONFLICT (id) DO NOTHING`, `('1', ' WHERE ')`},
		{`UPDATE ONLY public.t SET v = 'x' WHERE id OPERATOR(pg_catalog.=) '1'`, `id = '1'`},
		{`DELETE FROM ONLY "s"."t" WHERE "a b" OPERATOR(public.=) ' OPERATOR(x.=) ' AND "c OPERATOR(y.=) " OPERATOR("my schema".=) '2'`,
			`"a b" = ' OPERATOR(x.=) ' AND "c OPERATOR(y.=) " = '2'`},
		{`TRUNCATE ONLY public.t`, ``},
	}
	for _, tt := range tests {
		if got := keyOf(tt.sql); got != tt.want {
			t.Errorf("keyOf(%q) = %q, want %q", tt.sql, got, tt.want)
		}
	}
}

func TestSlaveStateAndLag(t *testing.T) {
	stale := 15 * time.Second
	tests := []struct {
		name      string
		recorded  string
		silent    time.Duration
		heard     bool
		reachable bool
		want      string
	}{
		{"fresh running", StateRunning, time.Second, true, true, StateRunning},
		{"silent daemon", StateRunning, time.Minute, true, true, StateStopped},
		{"never heard", StateRunning, 0, false, true, StateStopped},
		{"conflict", StateConflict, time.Second, true, true, StateConflict},
		{"first batch still applying", StateStopped, time.Second, true, true, StateRunning},
		{"stopped cleanly", StateStopped, 0, false, true, StateStopped},
		{"slave down", StateRunning, time.Second, true, false, StateUnreachable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := slaveState(tt.recorded, tt.silent, stale, tt.heard, tt.reachable); got != tt.want {
				t.Fatalf("got %s, want %s", got, tt.want)
			}
		})
	}
	if lag(0, 100) != 0 {
		t.Error("an idle, caught-up slave must show zero lag")
	}
	if lag(3, 2.5) != 2.5 {
		t.Error("a slave with pending events lags by its snapshot's age")
	}
}

func TestLagTransition(t *testing.T) {
	th := time.Minute
	tests := []struct {
		name     string
		alerting bool
		lag      time.Duration
		want     bool
		kind     AlertKind
	}{
		{"under", false, 10 * time.Second, false, ""},
		{"crosses", false, 61 * time.Second, true, AlertLag},
		{"stays over", true, 5 * time.Minute, true, ""},
		{"hovers just under", true, 50 * time.Second, true, ""},
		{"back under half", true, 29 * time.Second, false, AlertLagOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, kind := lagTransition(tt.alerting, tt.lag, th)
			if got != tt.want || kind != tt.kind {
				t.Fatalf("lagTransition(%v, %s) = %v, %q; want %v, %q", tt.alerting, tt.lag, got, kind, tt.want, tt.kind)
			}
		})
	}
}

func TestSplitInsert(t *testing.T) {
	tests := []struct {
		sql                    string
		prefix, values, suffix string
		ok                     bool
	}{
		{`INSERT INTO public.t (id, v) VALUES ('1', 'a') ON CONFLICT (id) DO NOTHING`,
			`INSERT INTO public.t (id, v) VALUES `, `('1', 'a')`, ` ON CONFLICT (id) DO NOTHING`, true},
		// Logs written before the conflict target was named.
		{`INSERT INTO public.t (id, v) VALUES ('1', 'a') ON CONFLICT DO NOTHING`,
			`INSERT INTO public.t (id, v) VALUES `, `('1', 'a')`, ` ON CONFLICT DO NOTHING`, true},
		{`INSERT INTO public.t (id, v) OVERRIDING SYSTEM VALUE VALUES ('1', NULL) ON CONFLICT (id, v) DO NOTHING`,
			`INSERT INTO public.t (id, v) OVERRIDING SYSTEM VALUE VALUES `, `('1', NULL)`, ` ON CONFLICT (id, v) DO NOTHING`, true},
		// The markers inside quoted identifiers, and inside a value.
		{`INSERT INTO "s"".x"."a VALUES (b" ("x VALUES (y", v) VALUES ('1', ' VALUES (') ON CONFLICT ("x VALUES (y") DO NOTHING`,
			`INSERT INTO "s"".x"."a VALUES (b" ("x VALUES (y", v) VALUES `, `('1', ' VALUES (')`, ` ON CONFLICT ("x VALUES (y") DO NOTHING`, true},
		{`INSERT INTO t ("k) ON CONFLICT (") VALUES (') ON CONFLICT (x') ON CONFLICT ("k) ON CONFLICT (") DO NOTHING`,
			`INSERT INTO t ("k) ON CONFLICT (") VALUES `, `(') ON CONFLICT (x')`, ` ON CONFLICT ("k) ON CONFLICT (") DO NOTHING`, true},
		{`UPDATE public.t SET v = 'a' WHERE id = '1'`, "", "", "", false},
		{`INSERT INTO public.t (id) VALUES ('1')`, "", "", "", false},
		{`TRUNCATE ONLY public.t`, "", "", "", false},
	}
	for _, tt := range tests {
		prefix, values, suffix, ok := splitInsert(tt.sql)
		if prefix != tt.prefix || values != tt.values || suffix != tt.suffix || ok != tt.ok {
			t.Errorf("splitInsert(%s)\n = %q, %q, %q, %v\nwant %q, %q, %q, %v", tt.sql, prefix, values, suffix, ok, tt.prefix, tt.values, tt.suffix, tt.ok)
		}
	}
}

func TestChunkJoinsConsecutiveInserts(t *testing.T) {
	ins := func(table, id, origin string) event {
		return event{txid: "1", origin: origin, table: table, op: 'I',
			sql: "INSERT INTO " + table + " (id) VALUES ('" + id + "') ON CONFLICT (id) DO NOTHING"}
	}
	upd := event{txid: "1", origin: "m", table: "public.t", op: 'U', sql: "UPDATE public.t SET v = 'x' WHERE id = '1'"}
	evs := []event{ins("public.t", "1", "m"), ins("public.t", "2", "m"), ins("public.t", "3", "m"), upd,
		ins("public.t", "4", "m"), ins("public.u", "5", "m"), ins("public.u", "6", "other")}
	c := chunkOf(false, evs)
	want := []string{
		"INSERT INTO public.t (id) VALUES ('1'), ('2'), ('3') ON CONFLICT (id) DO NOTHING",
		upd.sql,
		"INSERT INTO public.t (id) VALUES ('4') ON CONFLICT (id) DO NOTHING",
		"INSERT INTO public.u (id) VALUES ('5') ON CONFLICT (id) DO NOTHING",
		"INSERT INTO public.u (id) VALUES ('6') ON CONFLICT (id) DO NOTHING",
	}
	if !slices.Equal(c.stmts, want) {
		t.Errorf("statements:\n%s\nwant:\n%s", strings.Join(c.stmts, "\n"), strings.Join(want, "\n"))
	}
	checkRuns(t, evs, c, []int32{3, 1, 1, 1, 1}, []int{0, 3, 4, 5, 6})
}

// trigger.sql records the schema version the code expects.
func TestTriggerSQLRecordsSchemaVersion(t *testing.T) {
	want := fmt.Sprintf("INSERT INTO replica.version (version) VALUES (%d)", schemaVersion)
	if !strings.Contains(triggerSQLStr, want) {
		t.Errorf("trigger.sql lacks %q: schemaVersion and the file disagree", want)
	}
	if err := checkSchemaVersion("slave lyon", schemaVersion-1); err == nil || !strings.Contains(err.Error(), "run 'goreplica init' to upgrade") {
		t.Errorf("an older schema: %v", err)
	}
}

// A TRUNCATE of several tables logs one event per table; they are applied
// as one statement, and a chunk is never cut inside such a run.
func TestChunkJoinsTruncatesOfOneTransaction(t *testing.T) {
	tr := func(txid, table string) event {
		return event{txid: txid, origin: "m", table: table, op: 'T', sql: "TRUNCATE ONLY " + table}
	}
	var c chunk
	for _, e := range []event{tr("1", "public.p"), tr("1", "public.c"), tr("1", `"S"."x y"`),
		{txid: "1", origin: "m", table: "public.p", op: 'D', sql: "DELETE FROM ONLY public.p WHERE id OPERATOR(pg_catalog.=) '1'"},
		tr("1", "public.p"), tr("2", "public.c")} {
		c.add(e)
		if c.full() && e.op == 'T' {
			t.Errorf("chunk full after a TRUNCATE: a run must not be cut")
		}
	}
	want := []string{`TRUNCATE ONLY public.p, public.c, "S"."x y"`, "DELETE FROM ONLY public.p WHERE id OPERATOR(pg_catalog.=) '1'",
		"TRUNCATE ONLY public.p", "TRUNCATE ONLY public.c"}
	if !slices.Equal(c.stmts, want) {
		t.Errorf("statements:\n%s\nwant:\n%s", strings.Join(c.stmts, "\n"), strings.Join(want, "\n"))
	}
	if n := c.covers(0); n != 1 {
		t.Errorf("a joined TRUNCATE covers %d statements, want 1: it is applied the same way in exact mode", n)
	}
}
