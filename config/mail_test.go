package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const mailBase = `
[master]
name = "paris"
dsn = "host=db-paris dbname=shop"

[[slave]]
name = "lyon"
dsn = "host=db-lyon dbname=shop"
`

// TestSampleMail decodes sample.toml strictly and checks its [mail] section.
func TestSampleMail(t *testing.T) {
	t.Setenv("LYON_PASSWORD", "lyon-secret")
	t.Setenv("GOREPLICA_SMTP_PASSWORD", "smtp-secret")
	cfg, err := Load(filepath.Join("..", "sample.toml"))
	if err != nil {
		t.Fatalf("sample.toml: %v", err)
	}
	m := cfg.Mail
	if m == nil {
		t.Fatal("sample.toml has no [mail] section")
	}
	want := Mail{
		Host: "smtp.example.com", Port: 587, Username: "goreplica@example.com", Password: "smtp-secret",
		From: "goreplica@example.com", To: []string{"dba@example.com", "oncall@example.com"},
		TLS: "mandatory", Auth: "plain", SubjectPrefix: "[goreplica]", Events: MailEvents,
		MinInterval: Duration{Duration: 10 * time.Minute}, Timeout: Duration{Duration: 10 * time.Second}, LagAlert: Duration{Duration: time.Minute},
	}
	if fmt.Sprintf("%#v", *m) != fmt.Sprintf("%#v", want) {
		t.Errorf("sample [mail] decoded as\n%#v\nwant\n%#v", *m, want)
	}
}

func TestMailDefaults(t *testing.T) {
	cfg, err := Parse(mailBase)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Mail != nil {
		t.Fatalf("no [mail] section gave %v, want nil", cfg.Mail)
	}
	cfg, err = Parse(mailBase + `
[mail]
host = "localhost"
from = "goreplica@example.com"
to = ["dba@example.com"]
`)
	if err != nil {
		t.Fatal(err)
	}
	want := Mail{Host: "localhost", Port: 587, From: "goreplica@example.com", To: []string{"dba@example.com"},
		TLS: "mandatory", Auth: "none", SubjectPrefix: "[goreplica]",
		MinInterval: Duration{Duration: 10 * time.Minute}, Timeout: Duration{Duration: 10 * time.Second}, LagAlert: Duration{Duration: time.Minute}}
	if fmt.Sprintf("%#v", *cfg.Mail) != fmt.Sprintf("%#v", want) {
		t.Errorf("defaults\n%#v\nwant\n%#v", *cfg.Mail, want)
	}
}

func TestMailPassword(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "smtp.password")
	if err := os.WriteFile(pwFile, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SMTP_PW", "from-env")
	tests := []struct {
		name string
		keys string
		want string
		err  string
	}{
		{"inline", `password = "inline-pw"`, "inline-pw", ""},
		{"env", `password = "${SMTP_PW}"`, "from-env", ""},
		{"file", `password_file = "` + filepath.ToSlash(pwFile) + `"`, "from-file", ""},
		{"unset env", `password = "${NO_SUCH_SMTP_PW}"`, "", "mail.password: environment variable NO_SUCH_SMTP_PW is not set"},
		{"missing file", `password_file = "` + filepath.ToSlash(filepath.Join(dir, "none")) + `"`, "", "mail.password_file: open "},
		{"both", `password = "x1234"` + "\n" + `password_file = "` + filepath.ToSlash(pwFile) + `"`, "", "mail.password_file: both password and password_file are set"},
		{"none", ``, "", `mail.password: required for auth = "plain"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse(mailBase + `
[mail]
host = "smtp.example.com"
username = "u@example.com"
from = "goreplica@example.com"
to = ["dba@example.com"]
` + tt.keys + "\n")
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Mail.Password.Reveal(); got != tt.want {
				t.Errorf("password %q, want %q", got, tt.want)
			}
			if cfg.Mail.Auth != "plain" {
				t.Errorf("auth %q, want plain (username set)", cfg.Mail.Auth)
			}
			for _, s := range []string{cfg.Mail.String(), fmt.Sprint(cfg.Mail), fmt.Sprintf("%v", cfg.Mail)} {
				if strings.Contains(s, tt.want) {
					t.Errorf("password shown in %q", s)
				}
			}
		})
	}
}

func TestMailValidate(t *testing.T) {
	tests := []struct {
		name string
		mail string
		errs []string // every one must appear; nil means valid
	}{
		{"valid", `host = "h"
from = "a@example.com"
to = ["b@example.com"]`, nil},
		{"everything wrong", `port = 70000
from = "not an address"
to = []
tls = "sometimes"
auth = "kerberos"
min_interval = "0s"
timeout = "-1s"
lag_alert = "0s"`, []string{
			"mail.host: required",
			"mail.port: 70000 is not a TCP port",
			`mail.from: "not an address" is not an e-mail address`,
			"mail.to: at least one recipient is required",
			`mail.tls: "sometimes" must be`,
			`mail.auth: "kerberos" must be`,
			"mail.min_interval: must be positive",
			"mail.timeout: must be positive",
			"mail.lag_alert: must be positive",
		}},
		{"bad recipient", `host = "h"
from = "a@example.com"
to = ["b@example.com", "nobody"]`, []string{`mail.to[1]: "nobody" is not an e-mail address`}},
		{"auth needs a username", `host = "h"
from = "a@example.com"
to = ["b@example.com"]
auth = "login"
password = "pw123456"`, []string{`mail.username: required for auth = "login"`}},
		{"username without auth", `host = "h"
from = "a@example.com"
to = ["b@example.com"]
username = "u"
auth = "none"`, []string{`mail.auth: "none" but mail.username is set`}},
		{"events", `host = "h"
from = "a@example.com"
to = ["b@example.com"]
events = ["conflict", "lag_ok", "bogus"]`, []string{
			`mail.events[1]: "lag_ok" is only sent after a "lag" mail`,
			`mail.events[2]: "bogus" is not an event`,
		}},
		{"recovery after either problem", `host = "h"
from = "a@example.com"
to = ["b@example.com"]
events = ["error", "recovered"]`, nil},
		{"unknown key", `host = "h"
from = "a@example.com"
to = ["b@example.com"]
passwd = "x"`, []string{"mail.passwd: unknown key"}},
		{"duration as number", `host = "h"
from = "a@example.com"
to = ["b@example.com"]
min_interval = 600`, []string{"mail.min_interval: 600 is not a duration"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(mailBase + "\n[mail]\n" + tt.mail + "\n")
			if tt.errs == nil {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tt.errs)
			}
			for _, want := range tt.errs {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error lacks %q:\n%v", want, err)
				}
			}
		})
	}
}
