package mailer

import (
	"fmt"
	"strings"
	"time"
)

// maxSubject bounds the subject so that a phone shows its start.
const maxSubject = 160

// firstLine is the event's one-line summary, never empty and never more
// than one line.
func firstLine(e Event) string {
	s := strings.Join(strings.Fields(e.Summary), " ")
	if s == "" {
		s = defaultSummary(e.Kind, e.Slave)
	}
	return s
}

// subject renders the mail's subject: prefix, what happened and where, and
// how many events the digest adds.
func subject(prefix string, m mail) string {
	s := firstLine(m.Event)
	if _, recovery := closes[m.Kind]; m.held > 0 && !recovery && !m.summary {
		s += fmt.Sprintf(" (+%d more)", m.held)
	}
	if prefix != "" {
		s = prefix + " " + s
	}
	if len(s) > maxSubject {
		cut := maxSubject - 3
		for cut > 0 && !utf8Start(s[cut]) {
			cut--
		}
		s = s[:cut] + "..."
	}
	return s
}

func utf8Start(b byte) bool { return b&0xC0 != 0x80 }

// body renders the plain-text body: the summary line first, then the
// digest, the detail and a footer naming the host that sent it.
func body(m mail, hostname string, now time.Time) string {
	var b strings.Builder
	b.WriteString(firstLine(m.Event))
	b.WriteString("\n")
	for _, c := range m.closes {
		fmt.Fprintf(&b, "This closes the %s.\n", c)
	}
	for _, d := range m.digest {
		b.WriteString(d)
		b.WriteString("\n")
	}
	if m.dropped > 0 {
		fmt.Fprintf(&b, "(%d earlier alert mails were dropped because the mail queue was full; see the log)\n", m.dropped)
	}
	if d := strings.TrimSpace(m.Body); d != "" {
		b.WriteString("\n")
		b.WriteString(truncate(d, maxBody))
		b.WriteString("\n")
	}
	t := m.Time
	if t.IsZero() {
		t = now
	}
	fmt.Fprintf(&b, "\n-- \ngoreplica on %s, %s, event %s\n", hostname, t.Format("2006-01-02 15:04:05 MST"), m.Kind)
	return b.String()
}

// minScrub is the shortest password scrubbed from text: replacing a one or
// two letter password would garble every mail without protecting much.
const minScrub = 4

// scrub replaces every occurrence of secret in s with "xxxxx".
func scrub(secret, s string) string {
	if len(secret) < minScrub {
		return s
	}
	return strings.ReplaceAll(s, secret, "xxxxx")
}

// maxBody bounds the detail of one mail: a statement carrying a large
// value must not make a mail nobody can open on a phone.
const maxBody = 16 << 10

// truncate cuts s to at most n bytes on a rune boundary, saying how much
// was left out.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8Start(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%s\n... (%d more bytes not shown)", s[:cut], len(s)-cut)
}
