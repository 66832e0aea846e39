package mailer

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

// TestTest drives Test, the mail-test verb's SMTP conversation, against
// servers set up to succeed or to fail in each way an operator meets.
func TestTest(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		server serverConfig
		opts   func(o *Options)
		want   string // start of the line (success) or a substring of the error line
		ok     bool
		mech   string // expected SASL mechanism on success
		tls    bool   // expected session encryption on success
	}{
		{name: "STARTTLS and AUTH PLAIN accepted",
			server: serverConfig{startTLS: true, mechs: []string{"PLAIN", "LOGIN"}, requireTLS: true},
			want:   "accepted: 127.0.0.1:", ok: true, mech: "PLAIN", tls: true},
		{name: "AUTH LOGIN accepted",
			server: serverConfig{startTLS: true, mechs: []string{"LOGIN"}, requireTLS: true},
			opts:   func(o *Options) { o.Auth = "login" },
			want:   "accepted: ", ok: true, mech: "LOGIN", tls: true},
		{name: "AUTH CRAM-MD5 accepted",
			server: serverConfig{startTLS: true, mechs: []string{"CRAM-MD5"}},
			opts:   func(o *Options) { o.Auth = "cram-md5" },
			want:   "accepted: ", ok: true, mech: "CRAM-MD5", tls: true},
		{name: "implicit TLS accepted",
			server: serverConfig{implicit: true, mechs: []string{"PLAIN"}},
			opts:   func(o *Options) { o.TLS = "implicit" },
			want:   "accepted: ", ok: true, mech: "PLAIN", tls: true},
		{name: "opportunistic without STARTTLS and no auth accepted",
			server: serverConfig{},
			opts:   func(o *Options) { o.TLS, o.Auth, o.Username, o.Password = "opportunistic", "none", "", "" },
			want:   "accepted: ", ok: true, tls: false},
		{name: "tls none with AUTH PLAIN in clear accepted",
			server: serverConfig{mechs: []string{"PLAIN"}},
			opts:   func(o *Options) { o.TLS = "none" },
			want:   "accepted: ", ok: true, mech: "PLAIN", tls: false},
		{name: "TLS mandatory but no STARTTLS",
			server: serverConfig{mechs: []string{"PLAIN"}},
			want:   "TLS required but not offered: 127.0.0.1:"},
		{name: "wrong password",
			server: serverConfig{startTLS: true, mechs: []string{"PLAIN"}},
			opts:   func(o *Options) { o.Password = "wrong-password" },
			want:   `auth failed at 127.0.0.1:`},
		{name: "auth asked but not offered",
			server: serverConfig{startTLS: true},
			want:   "auth not offered by 127.0.0.1:"},
		{name: "mechanism not offered",
			server: serverConfig{startTLS: true, mechs: []string{"PLAIN"}},
			opts:   func(o *Options) { o.Auth = "cram-md5" },
			want:   "auth cram-md5 not offered by 127.0.0.1:"},
		{name: "untrusted certificate",
			server: serverConfig{startTLS: true, mechs: []string{"PLAIN"}},
			opts:   func(o *Options) { o.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12} },
			want:   "TLS certificate of 127.0.0.1:"},
		{name: "implicit TLS against a cleartext server",
			server: serverConfig{mechs: []string{"PLAIN"}},
			opts:   func(o *Options) { o.TLS = "implicit" },
			want:   "does not speak TLS on this port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			srv := startServer(t, tt.server)
			o := srv.options()
			if tt.opts != nil {
				tt.opts(&o)
			}
			line, err := Test(ctx, o)
			t.Logf("outcome: %q %v", line, err)
			if strings.Contains(line, testPassword) || (err != nil && strings.Contains(err.Error(), testPassword)) {
				t.Errorf("password in the outcome: %q %v", line, err)
			}
			if !tt.ok {
				if err == nil {
					t.Fatalf("Test succeeded: %q", line)
				}
				var e *Error
				if !errors.As(err, &e) {
					t.Errorf("error %T is not a *mailer.Error", err)
				}
				if !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
					t.Errorf("error line %q, want one line containing %q", err, tt.want)
				}
				if got := srv.messages(); len(got) != 0 {
					t.Errorf("%d mails arrived", len(got))
				}
				return
			}
			if err != nil {
				t.Fatalf("Test: %v", err)
			}
			if !strings.HasPrefix(line, tt.want) || strings.Contains(line, "\n") {
				t.Errorf("line %q, want one line starting %q", line, tt.want)
			}
			got := srv.messages()
			if len(got) != 1 {
				t.Fatalf("%d mails arrived, want 1", len(got))
			}
			r := got[0]
			if r.Mech != tt.mech || r.TLS != tt.tls {
				t.Errorf("session mech=%q TLS=%v, want %q %v", r.Mech, r.TLS, tt.mech, tt.tls)
			}
			if !strings.HasPrefix(r.Subject, "[goreplica] goreplica test mail from ") || r.Header.Get("X-Goreplica-Event") != "test" {
				t.Errorf("subject %q, event %q", r.Subject, r.Header.Get("X-Goreplica-Event"))
			}
			if tt.tls && !strings.Contains(line, "TLS 1.3") {
				t.Errorf("line %q does not name the TLS version", line)
			}
		})
	}
}

func TestTestConnectionRefused(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = Test(ctx, Options{Host: "127.0.0.1", Port: port, From: "a@example.com", To: []string{"b@example.com"}})
	if err == nil || !strings.HasPrefix(err.Error(), "connection refused by 127.0.0.1:") {
		t.Errorf("Test = %v, want connection refused", err)
	}
}

// TestTestSilentServer: a server that accepts the connection and never
// greets gives a clear timeout, within the configured timeout.
func TestTestSilentServer(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = Test(ctx, Options{Host: "127.0.0.1", Port: l.Addr().(*net.TCPAddr).Port, From: "a@example.com",
		To: []string{"b@example.com"}, Timeout: 300 * time.Millisecond})
	if err == nil || !strings.HasPrefix(err.Error(), "no answer from 127.0.0.1:") {
		t.Errorf("Test = %v, want no answer", err)
	}
}

func TestOptionsChecked(t *testing.T) {
	_, err := New(Options{TLS: "sometimes", Auth: "kerberos"}, nil)
	if err == nil {
		t.Fatal("New accepted bad options")
	}
	for _, want := range []string{"mail host: required", "mail from: required", "mail to: at least one recipient", `mail tls "sometimes"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	_, err = New(Options{Host: "h", From: "not an address", To: []string{"dba@example.com", "nobody"}}, nil)
	for _, want := range []string{`mail from "not an address"`, "mail to:"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
}

func TestNilMailer(t *testing.T) {
	var m *Mailer
	m.Notify(Event{Kind: KindStart})
	if err := m.Close(context.Background()); err != nil {
		t.Errorf("Close on nil: %v", err)
	}
}
