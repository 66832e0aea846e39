package mailer

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 22, 10, 2, 0, 0, time.UTC)

// step is one input to the throttle: an event, or a call to due.
type step struct {
	at    time.Duration
	kind  Kind   // event kind; "" means call due
	slave string // event slave
	all   bool   // due(all)
	want  []string
}

// show renders a mail for comparison: kind/slave, held count, digest or
// digest-mail summary.
func show(m mail) string {
	s := fmt.Sprintf("%s/%s +%d", m.Kind, m.Slave, m.held)
	if len(m.digest) > 0 {
		s += " [" + strings.Join(m.digest, "; ") + "]"
	}
	if m.summary {
		s += " {" + m.Summary + "}"
	}
	if len(m.closes) > 0 {
		s += " <" + strings.Join(m.closes, "; ") + ">"
	}
	return s
}

func ev(at time.Duration, k Kind, slave string, want ...string) step {
	return step{at: at, kind: k, slave: slave, want: want}
}

func due(at time.Duration, want ...string) step { return step{at: at, want: want} }

func TestThrottle(t *testing.T) {
	const m = time.Minute
	const s = time.Second
	tests := []struct {
		name  string
		steps []step
	}{
		{"first event is mailed", []step{
			ev(0, KindConflict, "lyon", "conflict/lyon +0"),
		}},
		{"events within the interval are held and counted in the next mail", []step{
			ev(0, KindConflict, "lyon", "conflict/lyon +0"),
			ev(1*m, KindConflict, "lyon"),
			ev(2*m, KindConflict, "lyon"),
			ev(10*m, KindConflict, "lyon", "conflict/lyon +2 [and 2 more conflicts on lyon since 10:03]"),
			ev(11*m, KindConflict, "lyon"),
		}},
		{"slaves have their own slots", []step{
			ev(0, KindConflict, "lyon", "conflict/lyon +0"),
			ev(1*m, KindConflict, "nantes", "conflict/nantes +0"),
			ev(2*m, KindConflict, "lyon"),
		}},
		{"kinds have their own slots", []step{
			ev(0, KindConflict, "lyon", "conflict/lyon +0"),
			ev(1*m, KindApplyError, "lyon", "error/lyon +0"),
			ev(2*m, KindLag, "lyon", "lag/lyon +0"),
		}},
		{"recovery after a mailed problem is mailed with the held count", []step{
			ev(0, KindConflict, "lyon", "conflict/lyon +0"),
			ev(1*m, KindConflict, "lyon"),
			ev(2*m, KindRecovered, "lyon", "recovered/lyon +1 [and 1 more conflict on lyon at 10:03] <conflict on lyon first mailed at 10:02>"),
			due(20 * m),
		}},
		{"recovery of a problem nobody was told about is not mailed", []step{
			ev(0, KindRecovered, "lyon"),
			ev(0, KindReachable, "lyon"),
			ev(0, KindLagOK, "lyon"),
		}},
		{"recovery is never throttled, flapping is", []step{
			ev(0, KindUnreachable, "lyon", "unreachable/lyon +0"),
			ev(1*s, KindReachable, "lyon", "reachable/lyon +0 <unreachable report on lyon first mailed at 10:02>"),
			ev(2*s, KindUnreachable, "lyon"),
			ev(3*s, KindReachable, "lyon"),
			ev(4*s, KindUnreachable, "lyon"),
			ev(5*s, KindReachable, "lyon"),
			due(9 * m),
			due(10*m, "unreachable/lyon +2 {2 more unreachable reports on lyon since 10:02 (over since 10:02)}"),
			ev(11*m, KindReachable, "lyon"),
		}},
		{"one recovery closes conflict and error", []step{
			ev(0, KindConflict, "lyon", "conflict/lyon +0"),
			ev(1*s, KindApplyError, "lyon", "error/lyon +0"),
			ev(2*s, KindApplyError, "lyon"),
			ev(3*s, KindRecovered, "lyon", "recovered/lyon +1 [and 1 more apply error on lyon at 10:02] <conflict on lyon first mailed at 10:02; apply error on lyon first mailed at 10:02>"),
			ev(4*s, KindRecovered, "lyon"),
		}},
		{"a digest mail goes out when the interval ends", []step{
			ev(0, KindConflict, "lyon", "conflict/lyon +0"),
			ev(1*m, KindConflict, "lyon"),
			ev(5*m, KindConflict, "lyon"),
			due(9 * m),
			due(10*m, "conflict/lyon +2 {2 more conflicts on lyon since 10:03}"),
			due(11 * m),
			ev(12*m, KindRecovered, "lyon", "recovered/lyon +0 <conflict on lyon first mailed at 10:02>"),
		}},
		{"a digest reopens a problem that was closed", []step{
			ev(0, KindConflict, "lyon", "conflict/lyon +0"),
			ev(1*s, KindRecovered, "lyon", "recovered/lyon +0 <conflict on lyon first mailed at 10:02>"),
			ev(2*s, KindConflict, "lyon"),
			ev(3*s, KindRecovered, "lyon"),
			ev(4*s, KindConflict, "lyon"),
			due(10*m, "conflict/lyon +2 {2 more conflicts on lyon since 10:02}"),
			ev(11*m, KindRecovered, "lyon", "recovered/lyon +0 <conflict on lyon first mailed at 10:12>"),
		}},
		{"stop flushes every held digest at once", []step{
			ev(0, KindConflict, "lyon", "conflict/lyon +0"),
			ev(0, KindLag, "nantes", "lag/nantes +0"),
			ev(1*m, KindConflict, "lyon"),
			ev(1*m, KindLag, "nantes"),
			ev(2*m, KindLag, "nantes"),
			{at: 3 * m, all: true, want: []string{
				"conflict/lyon +1 {1 more conflict on lyon at 10:03}",
				"lag/nantes +2 {2 more lag alerts on nantes since 10:03}",
			}},
		}},
		{"daemon-wide events are throttled too", []step{
			ev(0, KindStart, "", "start/ +0"),
			ev(1*m, KindAbort, "", "abort/ +0"),
			ev(2*m, KindStart, ""),
			due(10*m, "start/ +1 {1 more start at 10:04}"),
		}},
		{"test mails always go", []step{
			ev(0, KindTest, "", "test/ +0"),
			ev(1*s, KindTest, "", "test/ +0"),
		}},
		{"dates appear when the digest spans days", []step{
			ev(0, KindConflict, "lyon", "conflict/lyon +0"),
			ev(1*m, KindConflict, "lyon"),
			ev(24*time.Hour, KindConflict, "lyon", "conflict/lyon +1 [and 1 more conflict on lyon at Nov 22 10:03]"),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			th := newThrottle(10 * time.Minute)
			for i, st := range tt.steps {
				now := t0.Add(st.at)
				var got []mail
				if st.kind == "" {
					got = th.due(now, st.all)
				} else {
					got = th.decide(Event{Kind: st.kind, Slave: st.slave, Time: now})
				}
				var shown []string
				for _, m := range got {
					shown = append(shown, show(m))
				}
				if strings.Join(shown, "\n") != strings.Join(st.want, "\n") {
					t.Errorf("step %d (%s %s at +%s):\n got %q\nwant %q", i, st.kind, st.slave, st.at, shown, st.want)
				}
			}
		})
	}
}

func TestThrottleNext(t *testing.T) {
	th := newThrottle(10 * time.Minute)
	if n := th.next(); !n.IsZero() {
		t.Fatalf("next with nothing held = %v", n)
	}
	th.decide(Event{Kind: KindConflict, Slave: "lyon", Time: t0})
	if n := th.next(); !n.IsZero() {
		t.Fatalf("next after a mailed event = %v, want zero", n)
	}
	th.decide(Event{Kind: KindConflict, Slave: "lyon", Time: t0.Add(time.Minute)})
	th.decide(Event{Kind: KindLag, Slave: "nantes", Time: t0.Add(-5 * time.Minute)})
	th.decide(Event{Kind: KindLag, Slave: "nantes", Time: t0.Add(-4 * time.Minute)})
	if n, want := th.next(), t0.Add(5*time.Minute); !n.Equal(want) {
		t.Fatalf("next = %v, want %v (the earliest interval end with events held)", n, want)
	}
}

// TestThrottleHundredConflicts checks the promise made to operators: 100
// conflicts in one minute with a 10s interval give one mail per interval,
// and every conflict is either mailed or counted in exactly one digest.
func TestThrottleHundredConflicts(t *testing.T) {
	th := newThrottle(10 * time.Second)
	var mails []mail
	var last time.Time
	for i := range 100 {
		now := t0.Add(time.Duration(i) * 600 * time.Millisecond)
		mails = append(mails, th.due(now, false)...) // the sender's timer
		mails = append(mails, th.decide(Event{Kind: KindConflict, Slave: "lyon", Time: now})...)
		last = now
	}
	mails = append(mails, th.due(last.Add(10*time.Second), false)...)
	if n := th.next(); !n.IsZero() {
		t.Fatalf("events still held after the last interval: next = %v", n)
	}
	// One mail at once, then one per 10s interval over the minute, the
	// last one when the interval after the last conflict ends.
	if len(mails) != 7 {
		t.Fatalf("%d mails, want 7: %v", len(mails), mails)
	}
	total := 0
	for _, m := range mails {
		total += m.held
		if !m.summary {
			total++ // the mail reports its own event
		}
	}
	if total != 100 {
		t.Fatalf("mails account for %d conflicts, want 100", total)
	}
	if got := show(mails[1]); got != "conflict/lyon +16 {16 more conflicts on lyon since 10:02}" {
		t.Errorf("first digest %q", got)
	}
}

func TestLogGate(t *testing.T) {
	g := logGate{every: time.Minute}
	type call struct {
		at      time.Duration
		ok      bool // a success instead of a failure
		wantLog bool
		wantN   int // count on the log line, or the run length on success
	}
	calls := []call{
		{at: 0, wantLog: true, wantN: 1},
		{at: 10 * time.Second},
		{at: 20 * time.Second},
		{at: 60 * time.Second, wantLog: true, wantN: 3},
		{at: 70 * time.Second},
		{at: 80 * time.Second, ok: true, wantN: 5},
		{at: 90 * time.Second, wantLog: true, wantN: 1},
	}
	for i, c := range calls {
		if c.ok {
			if n := g.ok(); n != c.wantN {
				t.Errorf("call %d: ok() = %d, want %d", i, n, c.wantN)
			}
			continue
		}
		log, n := g.fail(t0.Add(c.at), 1)
		if log != c.wantLog || n != c.wantN {
			t.Errorf("call %d: fail() = %v, %d; want %v, %d", i, log, n, c.wantLog, c.wantN)
		}
	}
}
