package replicator

import "testing"

func TestPolicyFor(t *testing.T) {
	per := map[string]string{"public.*": "skip", "public.stock": "resync", "My Schema.*": "resync", "public.log_*": "stop"}
	tests := []struct {
		table, def string
		per        map[string]string
		want       string
	}{
		{"public.t", "", nil, "stop"},
		{"public.t", "skip", nil, "skip"},
		{"public.t", "stop", per, "skip"},
		{"public.stock", "stop", per, "resync"},
		{"public.log_2026", "resync", per, "stop"},
		{`"My Schema"."T"`, "stop", per, "resync"},
		{"other.t", "stop", per, "stop"},
	}
	for _, tt := range tests {
		t.Run(tt.table, func(t *testing.T) {
			if got := policyFor(tt.table, tt.def, tt.per); got != tt.want {
				t.Errorf("policyFor(%s, %q) = %s, want %s", tt.table, tt.def, got, tt.want)
			}
		})
	}
}

func TestKeyCondition(t *testing.T) {
	tests := []struct {
		stmt, want string
	}{
		{`UPDATE ONLY public.t SET v = 'a WHERE b' WHERE id OPERATOR(pg_catalog.=) '7'::integer`, `id OPERATOR(pg_catalog.=) '7'::integer`},
		{`DELETE FROM ONLY "a b"."x WHERE" WHERE "k 1" OPERATOR(pg_catalog.=) 'it''s'::text AND k2 OPERATOR(pg_catalog.=) '2'::integer`,
			`"k 1" OPERATOR(pg_catalog.=) 'it''s'::text AND k2 OPERATOR(pg_catalog.=) '2'::integer`},
		{`INSERT INTO public.t (id, v) VALUES ('7', 'a, b') ON CONFLICT (id) DO NOTHING`, `id = '7'`},
		{`INSERT INTO "s(".t (v, "k,1", id) OVERRIDING SYSTEM VALUE VALUES (NULL, E'\\x, ''y', '3') ON CONFLICT ("k,1", id) DO NOTHING`,
			`"k,1" = E'\\x, ''y' AND id = '3'`},
	}
	for _, tt := range tests {
		got, err := keyCondition(tt.stmt)
		if err != nil || got != tt.want {
			t.Errorf("keyCondition(%s) = %s, %v; want %s", tt.stmt, got, err, tt.want)
		}
	}
	if _, err := keyCondition(`INSERT INTO public.t (id) VALUES ('1') ON CONFLICT DO NOTHING`); err == nil {
		t.Error("an INSERT logged without its conflict target gave a key")
	}
}

func TestSequencesCollide(t *testing.T) {
	tests := []struct {
		a, b siteSequence
		want bool
	}{
		{siteSequence{51, 1}, siteSequence{51, 1}, true},
		{siteSequence{51, 1}, siteSequence{900, 1}, true}, // the slower one reaches the other's values
		{siteSequence{11, 10}, siteSequence{12, 10}, false},
		{siteSequence{11, 10}, siteSequence{31, 10}, true},
		{siteSequence{11, 10}, siteSequence{12, 5}, false},
		{siteSequence{11, 10}, siteSequence{16, 5}, true},
		{siteSequence{-1, -2}, siteSequence{-2, -2}, false},
	}
	for _, tt := range tests {
		if got := sequencesCollide(tt.a, tt.b); got != tt.want {
			t.Errorf("sequencesCollide(%+v, %+v) = %t, want %t", tt.a, tt.b, got, tt.want)
		}
	}
	// The advice, applied, gives sequences that do not collide.
	if sequencesCollide(siteSequence{61, 10}, siteSequence{62, 10}) {
		t.Error("the advised offsets collide")
	}
}
