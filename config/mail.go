package config

import (
	"fmt"
	netmail "net/mail"
	"os"
	"strings"
	"time"
)

// Mail is the optional [mail] section: where alert e-mail goes and how
// often. A nil *Mail in Config means no mail is sent.
type Mail struct {
	Host     string `toml:"host"`
	Port     int    `toml:"port"`
	Username string `toml:"username"`
	// Password may be written inline, as ${ENV}, or read from PasswordFile.
	Password     Secret   `toml:"password"`
	PasswordFile string   `toml:"password_file"`
	From         string   `toml:"from"`
	To           []string `toml:"to"`
	// TLS is "mandatory" (STARTTLS required; implicit TLS on port 465),
	// "implicit" (TLS from the first byte, on any port), "opportunistic"
	// (STARTTLS when offered) or "none".
	TLS string `toml:"tls"`
	// Auth is "plain", "login", "cram-md5" or "none"; empty means "plain"
	// when Username is set and "none" otherwise.
	Auth          string `toml:"auth"`
	SubjectPrefix string `toml:"subject_prefix"`
	// Events lists the kinds of mail to send; empty means all of them.
	Events []string `toml:"events"`
	// MinInterval is the least time between two mails of one kind about one
	// slave; what falls in between is counted and summarised.
	MinInterval Duration `toml:"min_interval"`
	Timeout     Duration `toml:"timeout"`
	// LagAlert is the replication lag above which a lag mail is sent.
	LagAlert Duration `toml:"lag_alert"`
}

// MailEvents lists the event kinds [mail] events may name, in the order
// the documentation gives them.
var MailEvents = []string{"start", "stop", "abort", "unreachable", "reachable", "conflict", "error", "recovered", "lag", "lag_ok", "copied"}

// mailRecovery maps each recovery event to the problem events it closes:
// a recovery mail is only sent after one of its problem mails.
var mailRecovery = map[string][]string{
	"reachable": {"unreachable"},
	"recovered": {"conflict", "error"},
	"lag_ok":    {"lag"},
}

// DefaultMail returns a [mail] section holding every default value.
func DefaultMail() *Mail {
	return &Mail{
		Port:          587,
		TLS:           "mandatory",
		SubjectPrefix: "[goreplica]",
		MinInterval:   Duration{Duration: 10 * time.Minute},
		Timeout:       Duration{Duration: 10 * time.Second},
		LagAlert:      Duration{Duration: 60 * time.Second},
	}
}

// String describes the section with the password masked, so that printing
// a Mail never shows the secret.
func (m *Mail) String() string {
	if m == nil {
		return "mail: off"
	}
	pw := "none"
	switch {
	case m.PasswordFile != "":
		pw = "from " + m.PasswordFile
	case m.Password != "":
		pw = "xxxxx"
	}
	return fmt.Sprintf("mail: %s:%d tls=%s auth=%s user=%q password=%s from=%s to=%s events=%s min_interval=%s",
		m.Host, m.Port, m.TLS, m.Auth, m.Username, pw, m.From, strings.Join(m.To, ","),
		eventsString(m.Events), m.MinInterval)
}

func eventsString(ev []string) string {
	if len(ev) == 0 {
		return "all"
	}
	return strings.Join(ev, ",")
}

// expand resolves ${ENV} in the password, reads password_file and fills
// the auth default.
func (m *Mail) expand() []error {
	var errs []error
	if m.Password != "" {
		v, err := expandEnv("mail.password", string(m.Password))
		if err != nil {
			errs = append(errs, err)
		} else {
			m.Password = Secret(v)
		}
	}
	if m.PasswordFile != "" {
		if m.Password != "" {
			errs = append(errs, fmt.Errorf("mail.password_file: both password and password_file are set; keep one"))
		} else if b, err := os.ReadFile(m.PasswordFile); err != nil {
			errs = append(errs, fmt.Errorf("mail.password_file: %w", err))
		} else {
			m.Password = Secret(strings.TrimRight(string(b), "\r\n"))
		}
	}
	if m.Auth == "" {
		m.Auth = "none"
		if m.Username != "" {
			m.Auth = "plain"
		}
	}
	return errs
}

// validate returns every problem in the [mail] section, each prefixed with
// its TOML path.
func (m *Mail) validate() []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if m.Host == "" {
		add("mail.host: required (the SMTP server, e.g. \"smtp.example.com\")")
	}
	if m.Port < 1 || m.Port > 65535 {
		add("mail.port: %d is not a TCP port (587 for STARTTLS, 465 for implicit TLS, 25)", m.Port)
	}
	if m.From == "" {
		add("mail.from: required")
	} else if _, err := netmail.ParseAddress(m.From); err != nil {
		add("mail.from: %q is not an e-mail address", m.From)
	}
	if len(m.To) == 0 {
		add("mail.to: at least one recipient is required")
	}
	for i, to := range m.To {
		if _, err := netmail.ParseAddress(to); err != nil {
			add("mail.to[%d]: %q is not an e-mail address", i, to)
		}
	}
	switch m.TLS {
	case "mandatory", "implicit", "opportunistic", "none":
	default:
		add("mail.tls: %q must be \"mandatory\", \"implicit\", \"opportunistic\" or \"none\"", m.TLS)
	}
	switch m.Auth {
	case "none":
		if m.Username != "" {
			add("mail.auth: \"none\" but mail.username is set; choose plain, login or cram-md5, or remove the username")
		}
	case "plain", "login", "cram-md5":
		if m.Username == "" {
			add("mail.username: required for auth = %q", m.Auth)
		}
		if m.Password == "" && m.PasswordFile == "" {
			add("mail.password: required for auth = %q (inline, \"${ENV}\" or password_file)", m.Auth)
		}
	default:
		add("mail.auth: %q must be \"plain\", \"login\", \"cram-md5\" or \"none\"", m.Auth)
	}
	known := map[string]bool{}
	for _, k := range MailEvents {
		known[k] = true
	}
	chosen := map[string]bool{}
	for _, e := range m.Events {
		chosen[e] = true
	}
	for i, e := range m.Events {
		if !known[e] {
			add("mail.events[%d]: %q is not an event (one of %s)", i, e, strings.Join(MailEvents, ", "))
			continue
		}
		if problems, ok := mailRecovery[e]; ok {
			found := false
			for _, p := range problems {
				found = found || chosen[p]
			}
			if !found {
				add("mail.events[%d]: %q is only sent after a %q mail; add %q or remove %q",
					i, e, strings.Join(problems, "\" or \""), problems[0], e)
			}
		}
	}
	positive := func(path string, d Duration) {
		switch {
		case d.Problem() != "":
			add("%s: %s", path, d.Problem())
		case d.Duration <= 0:
			add("%s: must be positive", path)
		}
	}
	positive("mail.min_interval", m.MinInterval)
	positive("mail.timeout", m.Timeout)
	positive("mail.lag_alert", m.LagAlert)
	return errs
}
