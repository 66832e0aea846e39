package tests

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-smtp"
)

// mailbox is a real SMTP server on 127.0.0.1 that accepts every mail and
// keeps them, for tests that check what the daemon mails.
type mailbox struct {
	port int
	mu   sync.Mutex
	got  []string
}

func newMailbox(t *testing.T) *mailbox {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := &mailbox{port: l.Addr().(*net.TCPAddr).Port}
	srv := smtp.NewServer(m)
	srv.Domain = "localhost"
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return m
}

// section is a [mail] section sending to this mailbox.
func (m *mailbox) section() string {
	return fmt.Sprintf("\n[mail]\nhost = \"127.0.0.1\"\nport = %d\ntls = \"none\"\nfrom = \"goreplica@example.com\"\nto = [\"dba@example.com\"]\n", m.port)
}

func (m *mailbox) mails() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.got...)
}

// waitMail waits for a mail containing want and returns it.
func (m *mailbox) waitMail(ctx context.Context, t *testing.T, want string) string {
	t.Helper()
	var found string
	waitFor(ctx, t, "a mail containing "+want, func(context.Context) (bool, string) {
		all := m.mails()
		for _, msg := range all {
			if strings.Contains(msg, want) {
				found = msg
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d mails:\n%s", len(all), strings.Join(all, "\n----\n"))
	})
	return found
}

// NewSession implements smtp.Backend.
func (m *mailbox) NewSession(*smtp.Conn) (smtp.Session, error) { return mailSession{m}, nil }

type mailSession struct{ m *mailbox }

func (mailSession) Mail(string, *smtp.MailOptions) error { return nil }
func (mailSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s mailSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	s.m.mu.Lock()
	s.m.got = append(s.m.got, string(b))
	s.m.mu.Unlock()
	return err
}
func (mailSession) Reset()        {}
func (mailSession) Logout() error { return nil }
