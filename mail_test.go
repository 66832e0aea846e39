package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/goreplica/goreplica/config"
	"github.com/goreplica/goreplica/mailer"
)

func TestMailEventNames(t *testing.T) {
	var kinds []string
	for _, k := range mailer.Kinds {
		kinds = append(kinds, string(k))
	}
	if !slices.Equal(kinds, config.MailEvents) {
		t.Errorf("config.MailEvents %q and mailer.Kinds %q differ", config.MailEvents, kinds)
	}
}

const mailTestConfig = `
[master]
name = "paris"
dsn = "host=db-paris dbname=shop user=replicator password=master-secret"

[[slave]]
name = "lyon"
dsn = "postgres://replicator:lyon-secret@db-lyon/shop"

[mail]
host = "127.0.0.1"
port = %d
from = "goreplica@example.com"
to = ["dba@example.com"]
tls = "opportunistic"
%s
`

func writeConfig(t *testing.T, port int, extra string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "goreplica.toml")
	if err := os.WriteFile(path, []byte(fmt.Sprintf(mailTestConfig, port, extra)), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestConfigSummaryMasksSecrets(t *testing.T) {
	t.Setenv("SMTP_PW", "smtp-secret")
	cfg, err := config.Load(writeConfig(t, 25, "username = \"u\"\npassword = \"${SMTP_PW}\""))
	if err != nil {
		t.Fatal(err)
	}
	s := configSummary(cfg)
	for _, secret := range []string{"master-secret", "lyon-secret", "smtp-secret"} {
		if strings.Contains(s, secret) {
			t.Errorf("summary shows %q:\n%s", secret, s)
		}
	}
	for _, want := range []string{"master paris:", "slave lyon:", "127.0.0.1:25", "password=xxxxx"} {
		if !strings.Contains(s, want) {
			t.Errorf("summary lacks %q:\n%s", want, s)
		}
	}
	o := mailOptions(cfg.Mail)
	if o.Password != "smtp-secret" || o.Auth != "plain" || o.Port != 25 || o.MinInterval != 10*time.Minute {
		t.Errorf("mailOptions = %+v", o)
	}
}

// sink is an SMTP server that accepts every mail.
type sink struct{ got chan string }

func (s sink) NewSession(*smtp.Conn) (smtp.Session, error) { return sinkSession(s), nil }

type sinkSession sink

func (sinkSession) Mail(string, *smtp.MailOptions) error { return nil }
func (sinkSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s sinkSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	s.got <- string(b)
	return err
}
func (sinkSession) Reset()        {}
func (sinkSession) Logout() error { return nil }

func TestMailTestVerb(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	srv := smtp.NewServer(sink{got})
	srv.Domain = "localhost"
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	var stdout, stderr bytes.Buffer
	err = run(ctx, []string{"mail-test", "-c", writeConfig(t, l.Addr().(*net.TCPAddr).Port, "")}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("mail-test: %v\n%s", err, stderr.String())
	}
	if out := stdout.String(); !strings.HasPrefix(out, "accepted: 127.0.0.1:") || strings.Count(out, "\n") != 1 {
		t.Errorf("stdout %q, want one line starting \"accepted:\"", out)
	}
	select {
	case m := <-got:
		if !strings.Contains(m, "goreplica test mail") {
			t.Errorf("test mail:\n%s", m)
		}
	case <-ctx.Done():
		t.Fatal("no test mail arrived")
	}

	// Nothing listens on the port any more: one clear line, an error.
	_ = srv.Close()
	stdout.Reset()
	err = run(ctx, []string{"mail-test", "-c", writeConfig(t, l.Addr().(*net.TCPAddr).Port, "")}, &stdout, &stderr)
	if err == nil || !strings.HasPrefix(err.Error(), "mail-test: connection refused by 127.0.0.1:") || strings.Contains(err.Error(), "\n") {
		t.Errorf("mail-test against a closed port: %v", err)
	}
	if stdout.Len() != 0 {
		t.Errorf("stdout %q on failure", stdout.String())
	}
}

func TestMailTestWithoutSection(t *testing.T) {
	path := filepath.Join(t.TempDir(), "goreplica.toml")
	text := strings.SplitN(mailTestConfig, "[mail]", 2)[0]
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	err := run(context.Background(), []string{"mail-test", "-c", path}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "no [mail] section") {
		t.Errorf("mail-test without [mail]: %v", err)
	}
}
