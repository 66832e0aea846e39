package dsn

import (
	"errors"
	"strings"
	"testing"
)

// pw is the password of every malformed string below: no message may hold
// any two consecutive characters of it.
const pw = "Qz7Xk1vJ9wYq"

func leaks(s string) string {
	for i := 0; i+2 <= len(pw); i++ {
		if strings.Contains(s, pw[i:i+2]) {
			return pw[i : i+2]
		}
	}
	return ""
}

func TestConfigNeverShowsPassword(t *testing.T) {
	t.Setenv("PGPASSWORD", "")
	tests := []struct {
		name, dsn string
	}{
		{"url bad port", "postgres://u:" + pw + "@h:bad/db"},
		{"url port out of range", "postgres://u:" + pw + "@h:99999/db"},
		{"url bad escape in password", "postgres://u:" + pw[:4] + "%zz" + pw[4:] + "@h/db"},
		{"url bad escape at end of password", "postgres://u:" + pw + "%4@h/db"},
		{"url bad escape in path", "postgres://u:" + pw + "@h/d%zzb"},
		{"url missing ]", "postgres://u:" + pw + "@[::1/db"},
		{"url missing ] with port", "postgres://u:" + pw + "@[::1:5432/db"},
		{"url @ in password", "postgres://u:" + pw[:5] + "@" + pw[5:] + "@h:bad/db"},
		{"url / in password", "postgresql://u:" + pw[:5] + "/" + pw[5:] + "@h:5432/db"},
		{"url password in query", "postgres://u@h:bad/db?password=" + pw},
		{"url # in password", "postgres://u:" + pw[:2] + "#" + pw[2:] + "@h/db"},
		{"url ? in password", "postgres://u:" + pw[:2] + "?" + pw[2:] + "@h:5432/db"},
		{"url [ in password", "postgres://u:" + pw[:2] + "[" + pw[2:] + "@h/db"},
		{"url bad escape in query password", "postgres://u@h/db?password=" + pw + "%zz&port=x"},
		{"url bad query value", "postgres://u:" + pw + "@h/db?sslmode=bogus"},
		{"url control character", "postgres://u:" + pw + "@h/db\x7f"},
		{"kv unterminated quote", "host=h password='" + pw},
		{"kv unterminated quote then keys", "host=h password='" + pw + " port=5432"},
		{"kv unquoted space", "host=h password=" + pw[:5] + " " + pw[5:]},
		{"kv unquoted space then key", "host=h password=" + pw[:5] + " " + pw[5:] + " port=5432"},
		{"kv bad port", "host=h port=x password=" + pw},
		{"kv bad sslmode", "host=h sslmode=bogus password=" + pw},
		{"kv missing =", "host=h password " + pw},
		{"kv trailing backslash", "host=h password='" + pw + `\`},
		{"kv uppercase key", "host=h PASSWORD=" + pw + " port=x"},
		{"kv spaces around =", "host=h password = " + pw + " port=x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Config(tt.dsn)
			if err == nil {
				// lib/pq accepts it: nothing to show, but the masked form
				// must still hide the password.
				if l := leaks(MaskPassword(tt.dsn)); l != "" {
					t.Errorf("MaskPassword(%q) = %q shows %q", tt.dsn, MaskPassword(tt.dsn), l)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not wrap ErrInvalid", err)
			}
			if l := leaks(err.Error()); l != "" {
				t.Errorf("error shows %q of the password: %v", l, err)
			}
			if l := leaks(MaskPassword(tt.dsn)); l != "" {
				t.Errorf("MaskPassword(%q) = %q shows %q", tt.dsn, MaskPassword(tt.dsn), l)
			}
			t.Logf("%s", err)
		})
	}
}

func TestConfigKeepsTheReason(t *testing.T) {
	tests := []struct{ dsn, want string }{
		{"postgres://u:" + pw + "@h:bad/db", `invalid port ":bad"`},
		{"postgres://u:" + pw + "@[::1/db", "missing ']'"},
		{"host=h password='" + pw, "unterminated quoted string"},
		{"host=h port=x password=" + pw, `"port"`},
	}
	for _, tt := range tests {
		_, err := Config(tt.dsn)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Config(%q) = %v, want an error with %q", tt.dsn, err, tt.want)
		}
	}
}

func TestMaskPassword(t *testing.T) {
	tests := []struct{ in, want string }{
		{"host=h password=x dbname=d", "host=h password=xxxxx dbname=d"},
		{"host=h password='a b\\' c' dbname=d", "host=h password=xxxxx dbname=d"},
		{"postgres://u:p%40ss@h/d", "postgres://u:xxxxx@h/d"},
		{"postgres://u:p@ss@h/d?password=z&sslmode=disable", "postgres://u:xxxxx@h/d?password=xxxxx&sslmode=disable"},
		{"postgres://u@h/d", "postgres://u@h/d"},
		{"host=h dbname=d", "host=h dbname=d"},
	}
	for _, tt := range tests {
		if got := MaskPassword(tt.in); got != tt.want {
			t.Errorf("MaskPassword(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
