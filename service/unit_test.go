package service

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestExecQuote(t *testing.T) {
	tests := []struct{ in, want string }{
		{"/etc/goreplica/goreplica.toml", `"/etc/goreplica/goreplica.toml"`},
		{"/srv/my configs/a.toml", `"/srv/my configs/a.toml"`},
		{`/srv/100%/$HOME/"q"\x`, `"/srv/100%%/$$HOME/\"q\"\\x"`},
	}
	for _, tt := range tests {
		if got := execQuote(tt.in); got != tt.want {
			t.Errorf("execQuote(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestUnitRefusesWhatSystemdCannotTake(t *testing.T) {
	ok := Config{Name: "goreplica", Executable: "/usr/bin/goreplica", ConfigPath: "/etc/goreplica/goreplica.toml"}
	tests := []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"relative config", func(c *Config) { c.ConfigPath = "goreplica.toml" }, "needs an absolute path"},
		{"bad name", func(c *Config) { c.Name = "my service" }, `service name "my service"`},
		{"user with a space", func(c *Config) { c.User = "pg admin" }, "not a valid user name"},
		{"template braces", func(c *Config) { c.ConfigPath = "/etc/{{x}}.toml" }, "cannot be installed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.change(&c)
			if _, err := Unit(c); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Unit: err = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// The unit must pass systemd's own checks with no warning at all:
// systemd-analyze exits 0 on a bad value and only warns about it.
func TestUnitVerifiesWithSystemdAnalyze(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("systemd-analyze: %v (CI is set: not skipping; apt-get install systemd)", err)
		}
		t.Skipf("systemd-analyze not installed: %v", err)
	}
	dir := t.TempDir()
	exe := filepath.Join(dir, "bin dir", "goreplica")
	if err := os.MkdirAll(filepath.Dir(exe), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, user := range []string{"", "root"} {
		unit, err := Unit(Config{Name: "goreplica-test", Executable: exe, ConfigPath: "/etc/goreplica/100% sure.toml", User: user})
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"After=network-online.target", "Wants=network-online.target", "Restart=on-failure", "RestartSec=5", "Type=notify"} {
			if !strings.Contains(unit, want+"\n") {
				t.Errorf("unit lacks %s:\n%s", want, unit)
			}
		}
		path := filepath.Join(dir, "goreplica-test.service")
		if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cmd := exec.CommandContext(ctx, analyze, "verify", path)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err = cmd.Run()
		cancel()
		if err != nil || strings.TrimSpace(out.String()) != "" {
			t.Errorf("systemd-analyze verify (user %q): %v\n%s\nunit:\n%s", user, err, out.String(), unit)
		}
	}
}
