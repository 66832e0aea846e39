package mailer

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestSubject(t *testing.T) {
	tests := []struct {
		name   string
		prefix string
		m      mail
		want   string
	}{
		{"summary", "[goreplica]", mail{Event: Event{Kind: KindConflict, Slave: "lyon", Summary: "conflict on lyon: x"}}, "[goreplica] conflict on lyon: x"},
		{"no prefix", "", mail{Event: Event{Kind: KindStart, Summary: "goreplica started"}}, "goreplica started"},
		{"default summary", "[r]", mail{Event: Event{Kind: KindUnreachable, Slave: "lyon"}}, "[r] lyon unreachable"},
		{"one line", "[r]", mail{Event: Event{Kind: KindConflict, Summary: "a\nb\r\n  c"}}, "[r] a b c"},
		{"held count", "[r]", mail{Event: Event{Kind: KindConflict, Slave: "lyon"}, held: 41}, "[r] conflict on lyon (+41 more)"},
		{"digest mail has no second count", "[r]", mail{Event: Event{Kind: KindConflict, Summary: "41 more conflicts on lyon since 10:02"}, held: 41, summary: true}, "[r] 41 more conflicts on lyon since 10:02"},
		{"recovery has no count", "[r]", mail{Event: Event{Kind: KindRecovered, Slave: "lyon"}, held: 41}, "[r] lyon applying again"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := subject(tt.prefix, tt.m); got != tt.want {
				t.Errorf("subject %q, want %q", got, tt.want)
			}
		})
	}
	long := subject("[r]", mail{Event: Event{Kind: KindConflict, Summary: strings.Repeat("é", 200)}})
	if len(long) > maxSubject || !utf8.ValidString(long) || !strings.HasSuffix(long, "...") {
		t.Errorf("long subject %d bytes, valid %v: %q", len(long), utf8.ValidString(long), long)
	}
}

func TestBody(t *testing.T) {
	m := mail{Event: Event{Kind: KindRecovered, Slave: "lyon", Time: t0, Summary: "lyon applying again", Body: "\nbatch 12 applied\n"},
		closes: []string{"conflict on lyon first mailed at 10:02"}, digest: []string{"and 3 more conflicts on lyon since 10:02"}, dropped: 2}
	want := "lyon applying again\n" +
		"This closes the conflict on lyon first mailed at 10:02.\n" +
		"and 3 more conflicts on lyon since 10:02\n" +
		"(2 earlier alert mails were dropped because the mail queue was full; see the log)\n" +
		"\nbatch 12 applied\n" +
		"\n-- \ngoreplica on db1, 2026-11-22 10:02:00 UTC, event recovered\n"
	if got := body(m, "db1", t0); got != want {
		t.Errorf("body:\n%s\nwant:\n%s", got, want)
	}
}

func TestScrub(t *testing.T) {
	tests := []struct{ secret, in, want string }{
		{"hunter22", "password=hunter22 x", "password=xxxxx x"},
		{"", "password= x", "password= x"},
		{"ab", "a cab", "a cab"}, // too short to scrub without garbling
	}
	for _, tt := range tests {
		if got := scrub(tt.secret, tt.in); got != tt.want {
			t.Errorf("scrub(%q, %q) = %q, want %q", tt.secret, tt.in, got, tt.want)
		}
	}
}
