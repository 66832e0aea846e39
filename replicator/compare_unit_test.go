package replicator

import (
	"fmt"
	"strings"
	"testing"
)

func TestPickTables(t *testing.T) {
	all := []*cmpTable{
		{name: "public.items", plain: "public.items", rel: "items"},
		{name: `public."Odd Name"`, plain: "public.Odd Name", rel: "Odd Name"},
		{name: "sales.items", plain: "sales.items", rel: "items"},
		{name: "sales.orders_2026", plain: "sales.orders_2026", rel: "orders_2026"},
	}
	tests := []struct {
		patterns []string
		want     string
		err      string
	}{
		{nil, `public.items public."Odd Name" sales.items sales.orders_2026`, ""},
		{[]string{"public.items"}, "public.items", ""},
		{[]string{"items"}, "public.items sales.items", ""},
		{[]string{`"Odd Name"`}, `public."Odd Name"`, ""},
		{[]string{`public."Odd Name"`}, `public."Odd Name"`, ""},
		{[]string{"public.Odd Name"}, `public."Odd Name"`, ""},
		{[]string{"sales.*"}, "sales.items sales.orders_2026", ""},
		{[]string{"sales.orders_*", "public.items", "sales.orders_2026"}, "public.items sales.orders_2026", ""},
		{[]string{"public.items", "nope", "sales.x*"}, "", "not a replicated table: nope, sales.x*"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.patterns, ","), func(t *testing.T) {
			got, err := pickTables(all, tt.patterns)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, tb := range got {
				names = append(names, tb.name)
			}
			if s := strings.Join(names, " "); s != tt.want {
				t.Errorf("got %s, want %s", s, tt.want)
			}
		})
	}
	if _, err := pickTables(nil, nil); err == nil {
		t.Error("no captured table at all must be an error")
	}
}

func TestKeyRangeWhere(t *testing.T) {
	ops := func(names ...string) []string {
		var out []string
		for _, n := range names {
			for _, o := range []string{"<", "<=", "=", ">=", ">"} {
				out = append(out, strings.ReplaceAll(n, "OP", o))
			}
		}
		return out
	}
	one := &cmpTable{keys: []string{"id"}, keyTypes: []string{"integer"}, keyOps: ops("pg_catalog.OP")}
	two := &cmpTable{keys: []string{"a", `"B b"`}, keyTypes: []string{"text", "text"}, keyOps: ops("pg_catalog.OP", "pg_catalog.OP")}
	mixed := &cmpTable{keys: []string{"a", "c"}, keyTypes: []string{"integer", "public.citext"}, keyOps: ops("pg_catalog.OP", "public.OP")}
	tests := []struct {
		t        *cmpTable
		r        keyRange
		where    string
		args     string
		describe string
		order    string
	}{
		{one, keyRange{}, "true", "[]", "(whole table)", "tbl.id USING OPERATOR(pg_catalog.<)"},
		{one, keyRange{lo: []string{"10"}}, "id OPERATOR(pg_catalog.>) $1::integer", "[10]", "id > '10'", ""},
		{one, keyRange{hi: []string{"20"}}, "id OPERATOR(pg_catalog.<=) $1::integer", "[20]", "id <= '20'", ""},
		{one, keyRange{lo: []string{"10"}, hi: []string{"20"}}, "id OPERATOR(pg_catalog.>) $1::integer AND id OPERATOR(pg_catalog.<=) $2::integer",
			"[10 20]", "id > '10' AND id <= '20'", ""},
		{two, keyRange{lo: []string{"x", "it's"}, hi: []string{"y", "z"}},
			`(a, "B b") OPERATOR(pg_catalog.>) ($1::text, $2::text) AND (a, "B b") OPERATOR(pg_catalog.<=) ($3::text, $4::text)`, "[x it's y z]",
			`(a, "B b") > ('x', 'it''s') AND (a, "B b") <= ('y', 'z')`, `tbl.a USING OPERATOR(pg_catalog.<), tbl."B b" USING OPERATOR(pg_catalog.<)`},
		{mixed, keyRange{lo: []string{"1", "x"}, hi: []string{"2", "y"}},
			"a OPERATOR(pg_catalog.>=) $1::integer AND ((a OPERATOR(pg_catalog.>) $1::integer) OR (a OPERATOR(pg_catalog.=) $1::integer AND c OPERATOR(public.>) $2::public.citext))" +
				" AND a OPERATOR(pg_catalog.<=) $3::integer AND ((a OPERATOR(pg_catalog.<) $3::integer) OR (a OPERATOR(pg_catalog.=) $3::integer AND c OPERATOR(public.<=) $4::public.citext))",
			"[1 x 2 y]", "(a, c) > ('1', 'x') AND (a, c) <= ('2', 'y')", "tbl.a USING OPERATOR(pg_catalog.<), tbl.c USING OPERATOR(public.<)"},
	}
	for i, tt := range tests {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			w, args := tt.r.where(tt.t)
			if w != tt.where || fmt.Sprint(args) != tt.args {
				t.Errorf("where:\n got %s %v\nwant %s %s", w, args, tt.where, tt.args)
			}
			if d := tt.r.describe(tt.t); d != tt.describe {
				t.Errorf("describe: %s, want %s", d, tt.describe)
			}
			if o := keyOrder(tt.t); tt.order != "" && o != tt.order {
				t.Errorf("order: %s, want %s", o, tt.order)
			}
		})
	}
}

func TestSetvalAhead(t *testing.T) {
	tests := []struct {
		s    sequence
		v    int64
		want string
	}{
		{sequence{name: "public.t_id_seq"}, 42,
			`SELECT setval('public.t_id_seq'::regclass, 42) FROM public.t_id_seq WHERE CASE WHEN is_called THEN last_value < 42 ELSE last_value <= 42 END`},
		{sequence{name: `public."Down"`, down: true}, -7,
			`SELECT setval('public."Down"'::regclass, -7) FROM public."Down" WHERE CASE WHEN is_called THEN last_value > -7 ELSE last_value >= -7 END`},
	}
	for _, tt := range tests {
		if got := setvalAhead(tt.s, tt.v); got != tt.want {
			t.Errorf("setvalAhead(%v, %d):\n got %s\nwant %s", tt.s, tt.v, got, tt.want)
		}
	}
}

func TestMatchSequences(t *testing.T) {
	all := []sequence{{name: "public.a_seq"}, {name: "public.b_seq"}, {name: "other.c_seq"}}
	plain := []string{"public.a_seq", "public.b_seq", "other.c_seq"}
	tests := []struct {
		patterns []string
		want     string
	}{
		{nil, ""},
		{[]string{"public.*"}, "public.a_seq public.b_seq"},
		{[]string{"*.c_seq", "public.b_seq"}, "public.b_seq other.c_seq"},
	}
	for _, tt := range tests {
		var got []string
		for _, s := range matchSequences(all, plain, tt.patterns) {
			got = append(got, s.name)
		}
		if g := strings.Join(got, " "); g != tt.want {
			t.Errorf("%v: got %s, want %s", tt.patterns, g, tt.want)
		}
	}
}
