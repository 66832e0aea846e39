package tests

import (
	"strings"
	"testing"
)

// TestMalformedDSNNeverPrintsPassword gives every verb that reads the
// configuration a DSN that lib/pq cannot parse, for each way a URL or a
// key=value string can be malformed, on the master and on a slave: the
// verb must fail naming the node and the key, and print no two
// consecutive characters of the password (the output of a service ends up
// in its journal).
func TestMalformedDSNNeverPrintsPassword(t *testing.T) {
	t.Parallel()
	const pw = "Qz7Xk1vJ9wYq"
	good := "host=127.0.0.1 port=1 dbname=x user=u sslmode=disable"
	malformed := []struct{ name, dsn string }{
		{"url bad port", "postgres://u:" + pw + "@127.0.0.1:bad/db"},
		{"url bad escape in password", "postgres://u:" + pw[:4] + "%zz" + pw[4:] + "@127.0.0.1/db"},
		{"url missing ]", "postgres://u:" + pw + "@[::1/db"},
		{"url slash in password", "postgresql://u:" + pw[:6] + "/" + pw[6:] + "@127.0.0.1/db"},
		{"url password in query", "postgres://u@127.0.0.1:99999/db?password=" + pw},
		{"url # in password", "postgres://u:" + pw[:2] + "#" + pw[2:] + "@127.0.0.1/db"},
		{"url bad sslmode", "postgres://u:" + pw + "@127.0.0.1/db?sslmode=bogus"},
		{"key=value unterminated quote", "host=127.0.0.1 password='" + pw + " dbname=db"},
		{"key=value unquoted space", "host=127.0.0.1 password=" + pw[:6] + " " + pw[6:] + " dbname=db"},
		{"key=value bad port", "host=127.0.0.1 port=x password=" + pw},
		{"key=value password without =", "host=127.0.0.1 password " + pw},
	}
	verbs := [][]string{
		{"init"},
		{"status"},
		{"status", "--json"},
		{"run"},
		{"uninstall", "--yes"},
		{"mail-test"},
		// install reads the configuration before it registers anything.
		{"service", "install", "--name", "goreplica-dsn-test"},
	}
	for _, m := range malformed {
		for _, onSlave := range []bool{false, true} {
			cfg := configFile{master: node{name: "paris", dsn: m.dsn}, slaves: []node{{name: "lyon", dsn: good}}}
			wantNode, wantKey := "master paris", "master.dsn"
			if onSlave {
				cfg = configFile{master: node{name: "paris", dsn: good}, slaves: []node{{name: "lyon", dsn: m.dsn}}}
				wantNode, wantKey = "slave lyon", `slave "lyon".dsn`
			}
			text := cfg.toml() + "\n[mail]\nhost = \"127.0.0.1\"\nport = 1\nfrom = \"a@example.org\"\nto = [\"b@example.org\"]\n"
			path := writeFile(t, "goreplica.toml", text)
			for _, v := range verbs {
				args := append(append([]string{}, v...), "-c", path)
				r := goreplica(t, nil, args...)
				where := m.name + " on " + wantNode + ": goreplica " + strings.Join(v, " ")
				if r.code == 0 {
					t.Errorf("%s: exit 0, want a failure\n%s", where, r)
					if v[0] == "service" {
						goreplica(t, nil, "service", "uninstall", "--name", "goreplica-dsn-test")
					}
				}
				out := r.stdout + r.stderr
				for i := 0; i+2 <= len(pw); i++ {
					if strings.Contains(out, pw[i:i+2]) {
						t.Errorf("%s: output shows %q of the password\n%s", where, pw[i:i+2], r)
						break
					}
				}
				if !strings.Contains(out, wantNode) || !strings.Contains(out, wantKey) {
					t.Errorf("%s: output does not name %q and %q\n%s", where, wantNode, wantKey, r)
				}
				if !strings.Contains(out, "not a valid connection string") {
					t.Errorf("%s: output does not say the DSN is invalid\n%s", where, r)
				}
			}
		}
	}
}

// TestSSLNotEnabledSaysWhatToDo: a DSN without sslmode asks lib/pq for SSL,
// which a server without SSL refuses; init and status must say which node
// and what to change, not only "SSL is not enabled on the server".
func TestSSLNotEnabledSaysWhatToDo(t *testing.T) {
	t.Parallel()
	ms, ss := servers(t)
	master := newDB(t, ms, "ssl_master")
	slave := newDB(t, ss, "ssl_slave")
	noSSL := func(d database) string {
		return strings.Replace(d.dsn(), " sslmode=disable", "", 1)
	}
	for _, onSlave := range []bool{false, true} {
		cfg := configFile{master: node{name: "paris", dsn: noSSL(master)}, slaves: []node{{name: "lyon", dsn: slave.dsn()}}}
		want := "master paris"
		if onSlave {
			cfg = configFile{master: node{name: "paris", dsn: master.dsn()}, slaves: []node{{name: "lyon", dsn: noSSL(slave)}}}
			want = "slave lyon"
		}
		path := writeConfig(t, cfg)
		r := goreplica(t, nil, "init", "-c", path)
		if r.code == 0 {
			t.Fatalf("init against a server without SSL succeeded\n%s", r)
		}
		for _, w := range []string{want, "SSL is not enabled", "sslmode=disable", "enable ssl on that server"} {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("init: stderr lacks %q\n%s", w, r)
			}
		}
		if !onSlave {
			r = goreplica(t, nil, "status", "-c", path)
			for _, w := range []string{want, "CHECK ITS DSN", "sslmode=disable"} {
				if !strings.Contains(r.stdout+r.stderr, w) {
					t.Errorf("status: output lacks %q\n%s", w, r)
				}
			}
		}
	}
}
