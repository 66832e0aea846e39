package mailer

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"syscall"

	gomail "github.com/wneessen/go-mail"
	gosmtp "github.com/wneessen/go-mail/smtp"
)

// addr is host:port of the SMTP server.
func (o Options) addr() string { return net.JoinHostPort(o.Host, strconv.Itoa(o.Port)) }

// implicitTLS reports whether the connection is TLS from its first byte.
func (o Options) implicitTLS() bool {
	return o.TLS == "implicit" || (o.TLS == "mandatory" && o.Port == 465)
}

// tlsConfig returns the TLS settings for the server.
func (o Options) tlsConfig() *tls.Config {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.TLSConfig != nil {
		tc = o.TLSConfig.Clone()
	}
	if tc.ServerName == "" {
		tc.ServerName = o.Host
	}
	return tc
}

// connHolder keeps the connection a client dialled, so that it can be
// closed from another goroutine: go-mail holds a lock while it waits for a
// reply, so closing through it would wait for the server.
type connHolder struct {
	mu   sync.Mutex
	conn net.Conn
}

func (h *connHolder) set(c net.Conn) {
	h.mu.Lock()
	h.conn = c
	h.mu.Unlock()
}

// close closes the connection, if any, unblocking a conversation in progress.
func (h *connHolder) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.conn != nil {
		_ = h.conn.Close()
	}
}

// client returns a go-mail client for the options. The client dials
// through h, which then holds its connection.
func (o Options) client(h *connHolder) (*gomail.Client, error) {
	tc := o.tlsConfig()
	implicit := o.implicitTLS()
	dial := func(ctx context.Context, network, address string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, network, address)
		if err != nil {
			return nil, err
		}
		if implicit {
			t := tls.Client(c, tc)
			if err := t.HandshakeContext(ctx); err != nil {
				_ = c.Close()
				return nil, err
			}
			c = t
		}
		h.set(c)
		if err := ctx.Err(); err != nil { // cancelled while dialling: h.close may have run already
			_ = c.Close()
			return nil, err
		}
		return c, nil
	}
	co := []gomail.Option{gomail.WithPort(o.Port), gomail.WithTimeout(o.Timeout), gomail.WithTLSConfig(tc),
		gomail.WithDialContextFunc(dial)}
	switch {
	case o.implicitTLS():
		co = append(co, gomail.WithSSL())
	case o.TLS == "mandatory":
		co = append(co, gomail.WithTLSPolicy(gomail.TLSMandatory))
	case o.TLS == "opportunistic":
		co = append(co, gomail.WithTLSPolicy(gomail.TLSOpportunistic))
	case o.TLS == "none":
		co = append(co, gomail.WithTLSPolicy(gomail.NoTLS))
	default:
		return nil, fmt.Errorf("mail tls %q: must be mandatory, implicit, opportunistic or none", o.TLS)
	}
	// With tls = "none" the operator chose cleartext; elsewhere go-mail
	// refuses to send a password over a connection that did not become TLS
	// (except to localhost), which guards against a STARTTLS downgrade.
	clear := o.TLS == "none"
	var at gomail.SMTPAuthType
	switch o.Auth {
	case "none":
		at = gomail.SMTPAuthNoAuth
	case "plain":
		at = gomail.SMTPAuthPlain
		if clear {
			at = gomail.SMTPAuthPlainNoEnc
		}
	case "login":
		at = gomail.SMTPAuthLogin
		if clear {
			at = gomail.SMTPAuthLoginNoEnc
		}
	case "cram-md5":
		at = gomail.SMTPAuthCramMD5
	default:
		return nil, fmt.Errorf("mail auth %q: must be plain, login, cram-md5 or none", o.Auth)
	}
	co = append(co, gomail.WithSMTPAuth(at))
	if at != gomail.SMTPAuthNoAuth {
		co = append(co, gomail.WithUsername(o.Username), gomail.WithPassword(o.Password))
	}
	c, err := gomail.NewClient(o.Host, co...)
	if err != nil {
		return nil, fmt.Errorf("mail client %s: %w", o.addr(), err)
	}
	return c, nil
}

// message builds the e-mail for m.
func (o Options) message(m mail, hostname string) (*gomail.Msg, error) {
	msg := gomail.NewMsg()
	if err := msg.From(o.From); err != nil {
		return nil, fmt.Errorf("mail from %q: %w", o.From, err)
	}
	if err := msg.To(o.To...); err != nil {
		return nil, fmt.Errorf("mail to %q: %w", strings.Join(o.To, ", "), err)
	}
	msg.Subject(scrub(o.Password, subject(o.SubjectPrefix, m)))
	msg.SetBodyString(gomail.TypeTextPlain, scrub(o.Password, body(m, hostname, m.Time)))
	msg.SetDateWithValue(m.Time)
	msg.SetMessageID()
	msg.SetGenHeader(gomail.HeaderXMailer, "goreplica")
	msg.SetGenHeader(headerKind, string(m.Kind))
	if m.Slave != "" {
		msg.SetGenHeader(headerSlave, m.Slave)
	}
	return msg, nil
}

// Headers that let a mail filter sort alerts without parsing subjects.
const (
	headerKind  gomail.Header = "X-Goreplica-Event"
	headerSlave gomail.Header = "X-Goreplica-Slave"
)

// temporary reports whether sending again later may succeed: the server
// is down, slow or answered 4xx.
func temporary(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var se *gomail.SendError
	if errors.As(err, &se) {
		return se.IsTemp()
	}
	var te *textproto.Error
	if errors.As(err, &te) {
		return te.Code >= 400 && te.Code < 500
	}
	if tlsProblem(err) {
		return false
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		refused(err) || errors.Is(err, syscall.ECONNRESET)
}

func tlsProblem(err error) bool {
	var (
		cv  *tls.CertificateVerificationError
		ua  x509.UnknownAuthorityError
		he  x509.HostnameError
		ci  x509.CertificateInvalidError
		rh  tls.RecordHeaderError
		alt tls.AlertError
	)
	return errors.As(err, &cv) || errors.As(err, &ua) || errors.As(err, &he) ||
		errors.As(err, &ci) || errors.As(err, &rh) || errors.As(err, &alt)
}

// describe turns an SMTP error into one line an operator can act on,
// naming the server. It never includes the password.
func describe(o Options, err error) string {
	addr := o.addr()
	var (
		dns *net.DNSError
		ne  net.Error
		te  *textproto.Error
		se  *gomail.SendError
		rh  tls.RecordHeaderError
	)
	msg := err.Error()
	switch {
	case refused(err):
		return fmt.Sprintf("connection refused by %s: no SMTP server listens there (check mail.host and mail.port)", addr)
	case errors.As(err, &dns):
		return fmt.Sprintf("cannot resolve mail.host %q: %v", o.Host, dns.Err)
	case strings.Contains(msg, "does not support STARTTLS"):
		return fmt.Sprintf("TLS required but not offered: %s does not offer STARTTLS (tls = \"mandatory\"; use \"implicit\" if it speaks TLS from the start, or \"opportunistic\" to accept cleartext)", addr)
	case errors.As(err, &rh):
		return fmt.Sprintf("TLS handshake with %s failed: it does not speak TLS on this port (tls = %q)", addr, o.TLS)
	case tlsProblem(err):
		return fmt.Sprintf("TLS certificate of %s not accepted: %v", addr, innermost(err))
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		return fmt.Sprintf("no answer from %s within %s (server down or slow, or a firewall drops the port)", addr, o.Timeout)
	case errors.Is(err, gosmtp.ErrUnencrypted):
		return fmt.Sprintf("auth refused: the connection to %s is not encrypted and the password would go in clear (use tls = \"mandatory\")", addr)
	case strings.Contains(msg, "server does not support SMTP AUTH type"):
		return fmt.Sprintf("auth %s not offered by %s (choose another mail.auth)", o.Auth, addr)
	case strings.Contains(msg, "server does not support SMTP AUTH"):
		return fmt.Sprintf("auth not offered by %s (set auth = \"none\", or check tls: many servers offer AUTH only after STARTTLS)", addr)
	case strings.HasPrefix(msg, "SMTP AUTH failed") && errors.As(err, &te):
		return fmt.Sprintf("auth failed at %s for user %q: %d %s", addr, o.Username, te.Code, te.Msg)
	case strings.HasPrefix(msg, "SMTP AUTH failed"):
		return fmt.Sprintf("auth failed at %s for user %q: %s", addr, o.Username, strings.TrimPrefix(msg, "SMTP AUTH failed: "))
	case errors.As(err, &se):
		if se.IsTemp() {
			return fmt.Sprintf("%s asks to try again later: %v", addr, err)
		}
		switch se.Reason {
		case gomail.ErrSMTPMailFrom:
			return fmt.Sprintf("sender %s refused by %s: %v", o.From, addr, err)
		case gomail.ErrSMTPRcptTo:
			return fmt.Sprintf("recipient refused by %s: %v", addr, err)
		case gomail.ErrSMTPData, gomail.ErrSMTPDataClose, gomail.ErrWriteContent:
			return fmt.Sprintf("message refused by %s: %v", addr, err)
		}
		return fmt.Sprintf("sending to %s: %v", addr, err)
	case errors.As(err, &te):
		return fmt.Sprintf("%s answered %d %s", addr, te.Code, te.Msg)
	}
	return fmt.Sprintf("sending to %s: %v", addr, err)
}

// innermost returns the deepest wrapped error, which for TLS problems holds
// the useful words ("certificate signed by unknown authority").
func innermost(err error) error {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err
		}
		err = u
	}
}

// Error is a failed SMTP conversation: Line says what went wrong in one
// line; Err is the underlying error.
type Error struct {
	Line string
	Err  error
}

func (e *Error) Error() string { return e.Line }
func (e *Error) Unwrap() error { return e.Err }

// Test sends one test mail with opts and returns a one-line account of the
// SMTP conversation: "accepted: ..." on success; on failure the error is an
// *Error whose line says what went wrong (connection refused, TLS required
// but not offered, auth failed, ...).
func Test(ctx context.Context, opts Options) (string, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return "", err
	}
	var h connHolder
	c, err := o.client(&h)
	if err != nil {
		return "", err
	}
	host := hostname()
	now := timeNow()
	m := mail{Event: Event{Kind: KindTest, Time: now,
		Summary: "goreplica test mail from " + host,
		Body: fmt.Sprintf("This is a test of goreplica's alert e-mail (goreplica mail-test).\n"+
			"Server %s, tls %s, auth %s, to %s.\nNothing needs doing.", o.addr(), o.TLS, o.Auth, strings.Join(o.To, ", "))}}
	msg, err := o.message(m, host)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 3*o.Timeout)
	defer cancel()
	stop := context.AfterFunc(ctx, h.close)
	defer stop()
	defer h.close()
	sc, err := c.DialToSMTPClientWithContext(ctx)
	if err != nil {
		return "", &Error{Line: scrub(o.Password, describe(o, err)), Err: err}
	}
	secured := "no TLS"
	if st, err := sc.GetTLSConnectionState(); err == nil && st.HandshakeComplete {
		secured = tls.VersionName(st.Version)
		if !o.implicitTLS() {
			secured = "STARTTLS " + secured
		}
	}
	err = c.SendWithSMTPClient(sc, msg)
	_ = c.CloseWithSMTPClient(sc)
	if err != nil {
		return "", &Error{Line: scrub(o.Password, describe(o, err)), Err: err}
	}
	auth := "no auth"
	if o.Auth != "none" {
		auth = "auth " + o.Auth + " as " + o.Username
	}
	return fmt.Sprintf("accepted: %s took the test mail for %s (%s, %s)", o.addr(), strings.Join(o.To, ", "), secured, auth), nil
}
