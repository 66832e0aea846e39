package mailer

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"os"
	"syscall"
	"testing"
	"time"
)

func TestTemporary(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"421 service not available", &textproto.Error{Code: 421, Msg: "closing"}, true},
		{"451 wrapped", fmt.Errorf("SMTP AUTH failed: %w", &textproto.Error{Code: 454, Msg: "try later"}), true},
		{"535 auth failed", fmt.Errorf("SMTP AUTH failed: %w", &textproto.Error{Code: 535, Msg: "bad"}), false},
		{"connection refused", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, true},
		{"connection dropped", io.EOF, true},
		{"timeout", context.DeadlineExceeded, true},
		{"stopping", context.Canceled, false},
		{"untrusted certificate", &net.OpError{Op: "remote error", Err: x509.UnknownAuthorityError{}}, false},
		{"no STARTTLS", errors.New(`STARTTLS mode set to: "TLSMandatory", but target host does not support STARTTLS`), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := temporary(tt.err); got != tt.want {
				t.Errorf("temporary(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestDescribeUnknownHost(t *testing.T) {
	o := Options{Host: "no-such-host.invalid", Port: 587}
	err := &net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "no such host", Name: o.Host, IsNotFound: true}}
	if got, want := describe(o, err), `cannot resolve mail.host "no-such-host.invalid": no such host`; got != want {
		t.Errorf("describe = %q, want %q", got, want)
	}
}

func TestImplicitTLS(t *testing.T) {
	tests := []struct {
		tls  string
		port int
		want bool
	}{
		{"mandatory", 587, false},
		{"mandatory", 465, true},
		{"implicit", 2465, true},
		{"opportunistic", 465, false},
		{"none", 465, false},
	}
	for _, tt := range tests {
		if got := (Options{TLS: tt.tls, Port: tt.port}).implicitTLS(); got != tt.want {
			t.Errorf("tls %q port %d: implicit = %v, want %v", tt.tls, tt.port, got, tt.want)
		}
	}
}

func TestDescribeTimeoutDuringAuth(t *testing.T) {
	o := Options{Host: "smtp.example.com", Port: 587, Timeout: 10 * time.Second}
	err := fmt.Errorf("SMTP AUTH failed: %w", &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded})
	if got, want := describe(o, err), "no answer from smtp.example.com:587 within 10s (server down or slow, or a firewall drops the port)"; got != want {
		t.Errorf("describe = %q, want %q", got, want)
	}
}
