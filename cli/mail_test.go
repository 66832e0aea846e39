package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime/quotedprintable"
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
	"github.com/goreplica/goreplica/replicator"
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
	err = runCLI(ctx, []string{"mail-test", "-c", writeConfig(t, l.Addr().(*net.TCPAddr).Port, "")}, &stdout, &stderr)
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
	err = runCLI(ctx, []string{"mail-test", "-c", writeConfig(t, l.Addr().(*net.TCPAddr).Port, "")}, &stdout, &stderr)
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
	err := runCLI(context.Background(), []string{"mail-test", "-c", path}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "no [mail] section") {
		t.Errorf("mail-test without [mail]: %v", err)
	}
}

func TestAlertEvent(t *testing.T) {
	conflict := &replicator.ConflictError{Slave: "lyon", Table: "public.orders", Key: "(id)=(42)", TxID: "81234",
		SQL: "UPDATE public.orders SET qty = 3 WHERE id = 42", Kind: replicator.UpdateMissing, Affected: 0}
	applyErr := &replicator.ApplyError{Slave: "lyon", Table: "public.orders", Key: "(id)=(7)", TxID: "9",
		SQL: "INSERT ...", Err: errors.New(`pq: column "qty2" does not exist`)}
	tests := []struct {
		name    string
		alert   replicator.Alert
		kind    mailer.Kind
		summary string
		body    []string
	}{
		{"conflict from its typed error",
			replicator.Alert{Kind: replicator.AlertConflict, Slave: "lyon", Summary: "slave lyon stopped on a conflict",
				Err: fmt.Errorf("apply batch: %w", conflict)},
			mailer.KindConflict, "conflict on lyon: update_missing in public.orders (id)=(42)",
			[]string{"txid:   81234", "UPDATE public.orders SET qty = 3 WHERE id = 42", "policy: stop:", "goreplica status -c /etc/g.toml"}},
		{"apply error from its typed error",
			replicator.Alert{Kind: replicator.AlertError, Slave: "lyon", Err: applyErr},
			mailer.KindApplyError, `apply error on lyon: public.orders (id)=(7): pq: column "qty2" does not exist`,
			[]string{"txid:   9", "INSERT ..."}},
		{"unreachable keeps the replicator's words",
			replicator.Alert{Kind: replicator.AlertUnreachable, Slave: "lyon", Summary: "slave lyon: replication interrupted",
				Body: "dial tcp: connection refused\n\nretrying", Err: errors.New("dial tcp: connection refused")},
			mailer.KindUnreachable, "slave lyon: replication interrupted", []string{"dial tcp: connection refused\n\nretrying"}},
		{"error without a body shows the error",
			replicator.Alert{Kind: replicator.AlertError, Slave: "lyon", Summary: "slave lyon stopped on an error", Err: errors.New("boom")},
			mailer.KindApplyError, "slave lyon stopped on an error", []string{"boom"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := alertEvent(tt.alert, "/etc/g.toml")
			if e.Kind != tt.kind || e.Slave != tt.alert.Slave || e.Summary != tt.summary {
				t.Errorf("event %s/%s %q, want %s/%s %q", e.Kind, e.Slave, e.Summary, tt.kind, tt.alert.Slave, tt.summary)
			}
			for _, want := range tt.body {
				if !strings.Contains(e.Body, want) {
					t.Errorf("body lacks %q:\n%s", want, e.Body)
				}
			}
		})
	}
	// Every alert the replicator raises is a kind the mailer knows.
	for _, k := range []replicator.AlertKind{replicator.AlertUnreachable, replicator.AlertReachable, replicator.AlertConflict,
		replicator.AlertError, replicator.AlertRecovered, replicator.AlertLag, replicator.AlertLagOK} {
		if !slices.Contains(mailer.Kinds, mailer.Kind(k)) {
			t.Errorf("replicator alert %q is not a mailer kind", k)
		}
	}
}

// TestStartStopMail: the daemon's start mail carries the configuration
// without secrets; a clean stop and an abnormal stop send their mails.
func TestStartStopMail(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 10)
	srv := smtp.NewServer(sink{got})
	srv.Domain = "localhost"
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	next := func() string {
		t.Helper()
		select {
		case m := <-got:
			head, body, _ := strings.Cut(m, "\r\n\r\n")
			b, err := io.ReadAll(quotedprintable.NewReader(strings.NewReader(body)))
			if err != nil {
				t.Fatal(err)
			}
			return strings.ReplaceAll(head, "\r\n ", " ") + "\r\n\r\n" + string(b) // headers unfolded, body decoded
		case <-ctx.Done():
			t.Fatal("no mail arrived")
			return ""
		}
	}
	cfg, err := config.Load(writeConfig(t, l.Addr().(*net.TCPAddr).Port, ""))
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))

	if m, err := startMailer(&config.Config{}, logger, "dev"); m != nil || err != nil {
		t.Fatalf("without [mail]: %v, %v", m, err)
	}
	stopMailer(nil, nil, logger) // no [mail]: nothing to do

	m, err := startMailer(cfg, logger, "dev")
	if err != nil {
		t.Fatal(err)
	}
	start := next()
	for _, want := range []string{"Subject: [goreplica] goreplica dev started: paris -> lyon", "master paris:", "password=xxxxx"} {
		if !strings.Contains(start, want) {
			t.Errorf("start mail lacks %q:\n%s", want, start)
		}
	}
	for _, secret := range []string{"master-secret", "lyon-secret"} {
		if strings.Contains(start, secret) {
			t.Errorf("start mail shows %q:\n%s", secret, start)
		}
	}
	stopMailer(m, context.Canceled, logger)
	if stop := next(); !strings.Contains(stop, "Subject: [goreplica] goreplica stopped\r\n") {
		t.Errorf("clean stop mail:\n%s", stop)
	}

	m, err = startMailer(cfg, logger, "dev")
	if err != nil {
		t.Fatal(err)
	}
	next()
	stopMailer(m, errors.New("master paris: connection refused"), logger)
	if abort := next(); !strings.Contains(abort, "Subject: [goreplica] goreplica stopped abnormally: master paris: connection refused") {
		t.Errorf("abort mail:\n%s", abort)
	}
	if strings.Contains(logs.String(), "level=WARN") {
		t.Errorf("warnings:\n%s", logs.String())
	}
}

// runCLI runs a command line as main does.
func runCLI(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return (&CLI{Version: "dev", Stdout: stdout, Stderr: stderr}).Run(ctx, args)
}
