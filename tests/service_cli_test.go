package tests

import (
	"path/filepath"
	"strings"
	"testing"
)

// print-unit shows the unit install would write, with absolute paths and
// the instance's name, without touching the system.
func TestServicePrintUnit(t *testing.T) {
	t.Parallel()
	cfg := writeConfig(t, configFile{
		master: node{name: "paris", dsn: "host=127.0.0.1 dbname=x"},
		slaves: []node{{name: "lyon", dsn: "host=127.0.0.1 dbname=y"}},
	})
	dir, base := filepath.Split(cfg)
	r := goreplica(t, nil, "service", "print-unit", "-c", cfg, "--name", "paris-lyon", "--user", "postgres")
	if r.code != 0 {
		t.Fatalf("expected exit 0\n%s", r)
	}
	for _, want := range []string{
		`ExecStart="` + binPath + `" "run" "-c" "` + filepath.Join(dir, base) + `" "--service" "paris-lyon"` + "\n",
		"User=postgres\n",
		"SyslogIdentifier=paris-lyon\n",
		"Restart=on-failure\n",
		"After=network-online.target\n",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("unit lacks %q\n%s", want, r)
		}
	}
}

func TestServiceUsageErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"service"}, 2, "an action is required"},
		{[]string{"service", "frobnicate"}, 2, `unknown action "frobnicate"`},
		{[]string{"service", "status", "--name", "two words"}, 2, `service name "two words"`},
		{[]string{"service", "start", "--name", "goreplica-never-installed"}, 1, "service goreplica-never-installed is not installed"},
		{[]string{"service", "uninstall", "--name", "goreplica-never-installed"}, 1, "service goreplica-never-installed is not installed"},
		{[]string{"service", "install", "-c", "/nonexistent/goreplica.toml", "--name", "goreplica-never-installed"}, 1, "read config /nonexistent/goreplica.toml"},
		{[]string{"run", "-c", "/nonexistent/goreplica.toml", "--service", "bad name"}, 2, `service name "bad name"`},
	}
	for _, tt := range tests {
		r := goreplica(t, nil, tt.args...)
		if r.code != tt.code || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("exit %d, want %d with %q on stderr\n%s", r.code, tt.code, tt.want, r)
		}
	}
	r := goreplica(t, nil, "service", "status", "--name", "goreplica-never-installed")
	if r.code != 4 || r.stdout != "service goreplica-never-installed: not installed\n" {
		t.Errorf("status of a service never installed: want exit 4 and 'not installed'\n%s", r)
	}
}
