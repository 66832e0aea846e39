package mailer

import (
	"fmt"
	"sort"
	"time"
)

// mail is one message to send: the event it reports and the digest lines
// counting what the throttle held back before it.
type mail struct {
	Event
	digest  []string // "and 41 more conflicts on lyon since 10:02"
	held    int      // how many events the digest lines count
	dropped int      // mails dropped from the queue before this one
	closes  []string // for a recovery: the problems it closes, "conflict mailed at 10:02"
	summary bool     // a digest mail: it reports held events only, not an event of its own
}

// throttle decides which events become mails. It is pure: no clock, no
// I/O; callers pass the time and carry out the result.
//
// The rules:
//   - at most one mail per kind and slave per interval; later events of that
//     kind and slave are counted and summarised in the next mail of the kind
//     (a new event after the interval, or a digest mail when the interval
//     ends with events held back);
//   - a recovery (reachable, recovered, lag_ok) is mailed, never throttled,
//     when a mail about the problem it closes went out and no recovery since;
//     it carries the count of problem events held back meanwhile;
//   - a recovery of a problem nobody was mailed about is not mailed; if
//     problem events are still held back, their digest says it recovered;
//   - test events always go out.
type throttle struct {
	interval time.Duration
	slots    map[slotKey]*slot
}

type slotKey struct {
	kind  Kind
	slave string
}

type slot struct {
	lastSent  time.Time // zero: never mailed
	open      bool      // a problem mail went out and no recovery mail since
	opened    time.Time // when the open problem was first mailed
	held      int       // events held back since `since`, not yet in any mail
	since     time.Time // time of the first held event
	last      Event     // the last held event
	recovered time.Time // non-zero: held events' problem recovered at this time
}

func newThrottle(interval time.Duration) *throttle {
	return &throttle{interval: interval, slots: map[slotKey]*slot{}}
}

func (t *throttle) slot(k Kind, slave string) *slot {
	key := slotKey{k, slave}
	s := t.slots[key]
	if s == nil {
		s = &slot{}
		t.slots[key] = s
	}
	return s
}

// decide returns the mails event e gives now (none or one). e.Time must be set.
func (t *throttle) decide(e Event) []mail {
	if e.Kind == KindTest {
		return []mail{{Event: e}}
	}
	if problems, ok := closes[e.Kind]; ok {
		return t.recover(e, problems)
	}
	s := t.slot(e.Kind, e.Slave)
	if !s.lastSent.IsZero() && e.Time.Sub(s.lastSent) < t.interval {
		if s.held == 0 {
			s.since = e.Time
		}
		s.held++
		s.last = e
		s.recovered = time.Time{}
		return nil
	}
	m := mail{Event: e}
	if s.held > 0 {
		m.digest = []string{digestLine(e.Kind, e.Slave, s.held, s.since, s.recovered, e.Time)}
		m.held = s.held
	}
	s.held, s.recovered = 0, time.Time{}
	s.lastSent = e.Time
	if isProblem(e.Kind) && !s.open {
		s.open, s.opened = true, e.Time
	}
	return []mail{m}
}

func (t *throttle) recover(e Event, problems []Kind) []mail {
	open := false
	for _, p := range problems {
		if s := t.slots[slotKey{p, e.Slave}]; s != nil && s.open {
			open = true
		}
	}
	if !open {
		for _, p := range problems {
			if s := t.slots[slotKey{p, e.Slave}]; s != nil && s.held > 0 {
				s.recovered = e.Time
			}
		}
		return nil
	}
	m := mail{Event: e}
	for _, p := range problems {
		s := t.slots[slotKey{p, e.Slave}]
		if s == nil {
			continue
		}
		if s.open {
			m.closes = append(m.closes, fmt.Sprintf("%s%s first mailed at %s", noun(p, 1), onSlave(e.Slave), clock(s.opened, e.Time)))
		}
		if s.held > 0 {
			m.digest = append(m.digest, digestLine(p, e.Slave, s.held, s.since, time.Time{}, e.Time))
			m.held += s.held
		}
		s.open, s.held, s.recovered = false, 0, time.Time{}
	}
	return []mail{m}
}

// next returns when the earliest digest falls due, or the zero time when
// nothing is held back.
func (t *throttle) next() time.Time {
	var n time.Time
	for _, s := range t.slots {
		if s.held == 0 {
			continue
		}
		if d := s.lastSent.Add(t.interval); n.IsZero() || d.Before(n) {
			n = d
		}
	}
	return n
}

// due returns a digest mail for each kind and slave whose interval has
// ended by now with events held back. With all set it returns every held
// digest whatever the time (used on stop).
func (t *throttle) due(now time.Time, all bool) []mail {
	keys := make([]slotKey, 0, len(t.slots))
	for k, s := range t.slots {
		if s.held > 0 && (all || !now.Before(s.lastSent.Add(t.interval))) {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].slave != keys[j].slave {
			return keys[i].slave < keys[j].slave
		}
		return keys[i].kind < keys[j].kind
	})
	var out []mail
	for _, k := range keys {
		s := t.slots[k]
		summary := fmt.Sprintf("%d more %s%s since %s", s.held, noun(k.kind, s.held), onSlave(k.slave), clock(s.since, now))
		if s.held == 1 {
			summary = fmt.Sprintf("1 more %s%s at %s", noun(k.kind, 1), onSlave(k.slave), clock(s.since, now))
		}
		body := fmt.Sprintf("The last one, at %s:\n%s", clockSeconds(s.last.Time, now), firstLine(s.last))
		if s.last.Body != "" {
			body += "\n\n" + s.last.Body
		}
		if !s.recovered.IsZero() {
			summary += fmt.Sprintf(" (over since %s)", clock(s.recovered, now))
			body = fmt.Sprintf("This has recovered since %s: no further mail will follow about it.\n\n%s", clock(s.recovered, now), body)
		} else if isProblem(k.kind) && !s.open {
			s.open, s.opened = true, now
		}
		out = append(out, mail{Event: Event{Kind: k.kind, Slave: k.slave, Time: now, Summary: summary, Body: body}, held: s.held, summary: true})
		s.held, s.recovered = 0, time.Time{}
		s.lastSent = now
	}
	return out
}

func digestLine(k Kind, slave string, n int, since, recovered, now time.Time) string {
	var s string
	if n == 1 {
		s = fmt.Sprintf("and 1 more %s%s at %s", noun(k, 1), onSlave(slave), clock(since, now))
	} else {
		s = fmt.Sprintf("and %d more %s%s since %s", n, noun(k, n), onSlave(slave), clock(since, now))
	}
	if !recovered.IsZero() {
		s += fmt.Sprintf(", over by %s", clock(recovered, now))
	}
	return s
}

func onSlave(slave string) string {
	if slave == "" {
		return ""
	}
	return " on " + slave
}

// clock formats t for a person: "10:02", with the date when t is not on
// the same day as now.
func clock(t, now time.Time) string {
	ty, tm, td := t.Date()
	ny, nm, nd := now.In(t.Location()).Date()
	if ty != ny || tm != nm || td != nd {
		return t.Format("Jan 2 15:04")
	}
	return t.Format("15:04")
}

// clockSeconds is clock with seconds: "10:02:37".
func clockSeconds(t, now time.Time) string {
	return clock(t, now) + t.Format(":05")
}
