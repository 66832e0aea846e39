package mailer

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"mime"
	"mime/quotedprintable"
	"net"
	netmail "net/mail"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// The tests talk to a real SMTP server on loopback, built on
// github.com/emersion/go-smtp, with STARTTLS (or implicit TLS) from a
// certificate generated here and AUTH PLAIN, LOGIN and CRAM-MD5.

const (
	testUser     = "alerts@example.com"
	testPassword = "s3cret-Pa55word"
)

// received is one message the test server accepted.
type received struct {
	From    string
	To      []string
	Subject string
	Header  netmail.Header
	Body    string // decoded text
	TLS     bool   // the session was encrypted
	Mech    string // SASL mechanism used, "" without auth
	User    string
}

// serverConfig chooses what the test server offers.
type serverConfig struct {
	startTLS   bool     // offer STARTTLS
	implicit   bool     // TLS from the first byte
	mechs      []string // AUTH mechanisms; nil offers none
	requireTLS bool     // refuse AUTH and MAIL before TLS
	// hold, when set, makes DATA wait until it is closed; each DATA that
	// starts waiting sends on held.
	hold chan struct{}
	// tempFail answers the first tempFail DATA commands 451 (try later).
	tempFail int
	// rejectRcpt answers RCPT TO for this address 550.
	rejectRcpt string
}

type testServer struct {
	t      *testing.T
	cfg    serverConfig
	addr   string
	host   string
	port   int
	roots  *x509.CertPool
	server *smtp.Server

	mu      sync.Mutex
	msgs    []received
	datas   int           // DATA commands seen
	arrived chan struct{} // one send per accepted message (buffered)
	held    chan struct{} // one send per DATA waiting on hold (buffered)
}

// startServer starts a test SMTP server on 127.0.0.1 and stops it in
// t.Cleanup.
func startServer(t *testing.T, cfg serverConfig) *testServer {
	t.Helper()
	s := &testServer{t: t, cfg: cfg, arrived: make(chan struct{}, 10000), held: make(chan struct{}, 10000)}
	cert, roots := testCert(t)
	s.roots = roots
	be := smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		_, isTLS := c.TLSConnectionState()
		return &session{srv: s, tls: isTLS, conn: c}, nil
	})
	s.server = smtp.NewServer(be)
	s.server.Domain = "localhost"
	s.server.ErrorLog = log.New(io.Discard, "", 0)
	s.server.ReadTimeout = 30 * time.Second
	s.server.WriteTimeout = 30 * time.Second
	s.server.AllowInsecureAuth = !cfg.requireTLS
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if cfg.startTLS {
		s.server.TLSConfig = tc
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.implicit {
		l = tls.NewListener(l, tc)
	}
	s.addr = l.Addr().String()
	host, port, _ := net.SplitHostPort(s.addr)
	s.host = host
	s.port, _ = strconv.Atoi(port)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.server.Serve(l)
	}()
	t.Cleanup(func() {
		if cfg.hold != nil {
			select {
			case <-cfg.hold:
			default:
				close(cfg.hold)
			}
		}
		_ = s.server.Close()
		<-done
	})
	return s
}

// options returns mailer options pointing at the server.
func (s *testServer) options() Options {
	return Options{
		Host: s.host, Port: s.port,
		Username: testUser, Password: testPassword,
		From: "goreplica@example.com", To: []string{"dba@example.com", "oncall@example.com"},
		TLS: "mandatory", Auth: "plain", SubjectPrefix: "[goreplica]",
		Timeout:   5 * time.Second,
		TLSConfig: &tls.Config{RootCAs: s.roots, MinVersion: tls.VersionTLS12},
	}
}

// messages returns a copy of what arrived so far.
func (s *testServer) messages() []received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]received(nil), s.msgs...)
}

type session struct {
	srv  *testServer
	conn *smtp.Conn
	tls  bool
	mech string
	user string
	from string
	to   []string
}

func (ss *session) encrypted() bool {
	if ss.tls {
		return true
	}
	_, ok := ss.conn.TLSConnectionState()
	return ok
}

func (ss *session) AuthMechanisms() []string { return ss.srv.cfg.mechs }

func (ss *session) Auth(mech string) (sasl.Server, error) {
	if ss.srv.cfg.requireTLS && !ss.encrypted() {
		return nil, &smtp.SMTPError{Code: 538, EnhancedCode: smtp.EnhancedCode{5, 7, 11}, Message: "Encryption required"}
	}
	check := func(user, pass string) error {
		if user != testUser || pass != testPassword {
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "Authentication credentials invalid"}
		}
		ss.mech, ss.user = mech, user
		return nil
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(_, user, pass string) error { return check(user, pass) }), nil
	case sasl.Login:
		return &loginServer{check: check}, nil
	case "CRAM-MD5":
		return &cramServer{check: func(user, digest string) error {
			return check(user, map[bool]string{true: testPassword}[digest == "ok"])
		}}, nil
	}
	return nil, smtp.ErrAuthUnsupported
}

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	if ss.srv.cfg.requireTLS && !ss.encrypted() {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Must issue a STARTTLS command first"}
	}
	if len(ss.srv.cfg.mechs) > 0 && ss.mech == "" {
		return smtp.ErrAuthRequired
	}
	ss.from = from
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if to == ss.srv.cfg.rejectRcpt {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user"}
	}
	ss.to = append(ss.to, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	raw, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	ss.srv.mu.Lock()
	ss.srv.datas++
	n := ss.srv.datas
	ss.srv.mu.Unlock()
	if n <= ss.srv.cfg.tempFail {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Try again later"}
	}
	if h := ss.srv.cfg.hold; h != nil {
		ss.srv.held <- struct{}{}
		<-h
	}
	msg, err := netmail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return err
	}
	b, err := io.ReadAll(msg.Body)
	if err != nil {
		return err
	}
	if strings.EqualFold(msg.Header.Get("Content-Transfer-Encoding"), "quoted-printable") {
		b, err = io.ReadAll(quotedprintable.NewReader(bytes.NewReader(b)))
		if err != nil {
			return err
		}
	}
	subj, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	if err != nil {
		return err
	}
	ss.srv.mu.Lock()
	ss.srv.msgs = append(ss.srv.msgs, received{
		From: ss.from, To: append([]string(nil), ss.to...), Subject: subj, Header: msg.Header,
		Body: strings.ReplaceAll(string(b), "\r\n", "\n"), TLS: ss.encrypted(), Mech: ss.mech, User: ss.user,
	})
	ss.srv.mu.Unlock()
	ss.srv.arrived <- struct{}{}
	return nil
}

func (ss *session) Reset()        { ss.from, ss.to = "", nil }
func (ss *session) Logout() error { return nil }

// loginServer is the server side of AUTH LOGIN, which go-sasl does not ship.
type loginServer struct {
	step  int
	user  string
	check func(user, pass string) error
}

func (l *loginServer) Next(resp []byte) ([]byte, bool, error) {
	switch l.step {
	case 0:
		l.step++
		if resp != nil { // initial response carries the user name
			l.user = string(resp)
			l.step++
			return []byte("Password:"), false, nil
		}
		return []byte("Username:"), false, nil
	case 1:
		l.step++
		l.user = string(resp)
		return []byte("Password:"), false, nil
	default:
		return nil, true, l.check(l.user, string(resp))
	}
}

// cramServer is the server side of AUTH CRAM-MD5 (RFC 2195).
type cramServer struct {
	challenge []byte
	check     func(user, digest string) error
}

func (c *cramServer) Next(resp []byte) ([]byte, bool, error) {
	if c.challenge == nil {
		c.challenge = []byte(fmt.Sprintf("<%d.%d@localhost>", time.Now().UnixNano(), 42))
		return c.challenge, false, nil
	}
	user, digest, ok := strings.Cut(string(resp), " ")
	if !ok {
		return nil, true, errors.New("malformed CRAM-MD5 response")
	}
	h := hmac.New(md5.New, []byte(testPassword))
	h.Write(c.challenge)
	verdict := "bad"
	if hmac.Equal([]byte(hex.EncodeToString(h.Sum(nil))), []byte(digest)) {
		verdict = "ok"
	}
	return nil, true, c.check(user, verdict)
}

// testCert returns a self-signed certificate for 127.0.0.1 and localhost
// and a pool that trusts it.
func testCert(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "goreplica test SMTP"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}
