package dsn

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/lib/pq"
)

// Mask is what a password is replaced with wherever a connection string or
// an error about one is printed.
const Mask = "xxxxx"

// minRawSecret is the shortest password text replaced wherever it appears
// in an error message; shorter ones are only removed from the quoted parts
// of the message (replacing every "a" of a message would make it unreadable
// and hides nothing).
const minRawSecret = 3

// ErrInvalid marks a connection string that lib/pq cannot parse.
var ErrInvalid = errors.New("not a valid connection string")

// Config parses s as lib/pq does and returns its configuration. On error
// the message holds no part of the password, in either the URL or the
// key=value form, whatever is wrong with s (an unterminated quote, a bad
// port, a bad % escape, a missing ']', a value with a space left
// unquoted...); it wraps ErrInvalid.
func Config(s string) (pq.Config, error) {
	cfg, err := pq.NewConfig(s)
	if err != nil {
		return pq.Config{}, fmt.Errorf("%w: %s", ErrInvalid, Redact(reason(err), s))
	}
	return cfg, nil
}

// Check reports, as Config does, whether s is a valid connection string.
func Check(s string) error {
	_, err := Config(s)
	return err
}

// reason is err's message without the copy of the whole URL that
// net/url's errors carry.
func reason(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}

// IsURL reports whether s is in the postgres:// form.
func IsURL(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

// span is a byte range [start, end) of a connection string that holds a
// password.
type span struct{ start, end int }

var (
	kvPassword  = regexp.MustCompile(`(?i)(?:^|\s)password(?:\s*=\s*|\s+)`)
	kvNextKey   = regexp.MustCompile(`\s+[A-Za-z_][A-Za-z0-9_]*\s*=`)
	urlPassword = regexp.MustCompile(`(?i)(?:^|[?&])password=`)
)

// secretSpans returns where s holds passwords. It errs on the side of too
// much: in a malformed string a password runs to wherever lib/pq could
// still read it as one (the end of an unterminated quote, the next
// "key=" of a value with an unquoted space, the last '@' of a URL).
func secretSpans(s string) []span {
	var out []span
	if IsURL(s) {
		rest := strings.Index(s, "://") + 3
		if at := strings.LastIndex(s, "@"); at > rest {
			if colon := strings.IndexByte(s[rest:at], ':'); colon >= 0 {
				out = append(out, span{rest + colon + 1, at})
			}
		}
		if q := strings.IndexByte(s, '?'); q >= 0 {
			for _, m := range urlPassword.FindAllStringIndex(s[q:], -1) {
				start := q + m[1]
				end := strings.IndexByte(s[start:], '&')
				if end < 0 {
					end = len(s)
				} else {
					end += start
				}
				out = append(out, span{start, end})
			}
		}
		return out
	}
	for _, m := range kvPassword.FindAllStringIndex(s, -1) {
		start := m[1]
		end := len(s)
		if start < len(s) && s[start] == '\'' {
			// Up to the closing quote; an unterminated one runs to the end.
			for i := start + 1; i < len(s); i++ {
				if s[i] == '\\' {
					i++
					continue
				}
				if s[i] == '\'' {
					end = i + 1
					break
				}
			}
		} else if n := kvNextKey.FindStringIndex(s[start:]); n != nil {
			end = start + n[0]
		}
		out = append(out, span{start, end})
	}
	return out
}

// secrets returns the password texts s holds, as written and as lib/pq
// would read them (quotes and escapes removed, %-escapes decoded).
func secrets(s string) []string {
	var out []string
	add := func(v string) {
		v = strings.TrimSpace(v)
		if v != "" {
			out = append(out, v)
		}
	}
	for _, sp := range secretSpans(s) {
		v := s[sp.start:sp.end]
		add(v)
		if strings.HasPrefix(v, "'") {
			u := strings.TrimSuffix(strings.TrimPrefix(v, "'"), "'")
			add(u)
			add(strings.NewReplacer(`\\`, `\`, `\'`, `'`).Replace(u))
		}
		if IsURL(s) {
			add(lenientUnescape(v))
		}
		for _, w := range strings.Fields(v) {
			add(w)
		}
	}
	return out
}

// lenientUnescape decodes the valid %-escapes of v and keeps the rest.
func lenientUnescape(v string) string {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] == '%' && i+2 < len(v) {
			if n, err := strconv.ParseUint(v[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(n))
				i += 2
				continue
			}
		}
		if v[i] == '+' {
			b.WriteByte(' ')
			continue
		}
		b.WriteByte(v[i])
	}
	return b.String()
}

// MaskPassword returns s with every password it holds replaced by Mask,
// in the URL and the key=value forms, malformed or not.
func MaskPassword(s string) string {
	spans := secretSpans(s)
	if len(spans) == 0 {
		return s
	}
	var b strings.Builder
	last := 0
	for _, sp := range spans {
		if sp.start < last {
			continue
		}
		b.WriteString(s[last:sp.start])
		b.WriteString(Mask)
		last = sp.end
	}
	b.WriteString(s[last:])
	return b.String()
}

// Redact returns msg, a message about connection string s, with every part
// of the passwords s holds removed: a quoted part of msg that is or holds
// some of a password is replaced (by the masked connection string when it
// quotes the whole of s), and so is any password text found unquoted.
func Redact(msg, s string) string {
	pws := secrets(s)
	if len(pws) == 0 {
		return msg
	}
	// touches reports whether frag and a password share some text: frag
	// is part of one, or holds two consecutive characters of one.
	touches := func(frag string) bool {
		if frag == "" {
			return false
		}
		for _, p := range pws {
			if strings.Contains(p, frag) {
				return true
			}
			n := min(2, len(p))
			for i := 0; i+n <= len(p); i++ {
				if strings.Contains(frag, p[i:i+n]) {
					return true
				}
			}
		}
		return false
	}
	var b strings.Builder
	for i := 0; i < len(msg); {
		if msg[i] == '"' {
			if q, err := strconv.QuotedPrefix(msg[i:]); err == nil {
				frag, _ := strconv.Unquote(q)
				switch {
				case frag == s:
					b.WriteString(strconv.Quote(MaskPassword(s)))
				case touches(frag):
					b.WriteString(strconv.Quote(Mask))
				default:
					b.WriteString(q)
				}
				i += len(q)
				continue
			}
		}
		b.WriteByte(msg[i])
		i++
	}
	out := b.String()
	for _, p := range pws {
		if len(p) >= minRawSecret {
			out = strings.ReplaceAll(out, p, Mask)
		}
	}
	return out
}
