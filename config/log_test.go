package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLogSectionProblemsReportedWithTheirPaths(t *testing.T) {
	_, err := Parse(mailBase + `
[log]
level = "verbose"
format = "xml"
max_size = "lots"
max_files = 0
`)
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		`log.level: "verbose" is not one of debug, info, warn, error`,
		`log.format: "xml" is not text or json`,
		`log.max_size: "lots" is not a size`,
		`log.max_files: 0`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not contain %q:\n%v", want, err)
		}
	}
}

func TestLogDefaults(t *testing.T) {
	cfg, err := Parse(mailBase)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Log != DefaultLog() {
		t.Errorf("log section without [log] = %+v, want the defaults %+v", cfg.Log, DefaultLog())
	}
}

func TestSizes(t *testing.T) {
	tests := []struct {
		toml    string
		bytes   int64
		problem string
	}{
		{`"10MB"`, 10 << 20, ""},
		{`"10 MiB"`, 10 << 20, ""},
		{`"512kb"`, 512 << 10, ""},
		{`"1.5GB"`, 3 << 29, ""},
		{`"2048B"`, 2048, ""},
		{`5242880`, 5242880, ""},
		{`"ten"`, 0, `"ten" is not a size`},
		{`"10"`, 0, `"10" is not a size`},
		{`-1`, 0, `-1 is negative`},
		{`1.5`, 0, `1.5 is not a size`},
	}
	for _, tt := range tests {
		t.Run(tt.toml, func(t *testing.T) {
			cfg, err := Parse(mailBase + "\n[log]\nmax_size = " + tt.toml + "\n")
			if tt.problem == "" {
				if err != nil {
					t.Fatal(err)
				}
				if cfg.Log.MaxSize.Bytes != tt.bytes {
					t.Errorf("max_size = %d bytes, want %d", cfg.Log.MaxSize.Bytes, tt.bytes)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.problem) {
				t.Errorf("error = %v, want one containing %q", err, tt.problem)
			}
		})
	}
}

// A service runs in a working directory of its manager's choosing: relative
// paths are taken from the configuration file's directory.
func TestRelativePathsFromTheConfigFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "lyon.pw"), []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "goreplica.toml")
	text := mailBase + "password_file = \"lyon.pw\"\n[log]\nfile = \"logs/goreplica.log\"\n"
	if err := os.WriteFile(cfgPath, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir())
	cfg, err := Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "logs", "goreplica.log"); cfg.Log.File != want {
		t.Errorf("log.file = %s, want %s", cfg.Log.File, want)
	}
	if !strings.Contains(cfg.Slaves[0].DSN.Reveal(), "s3cret") {
		t.Errorf("slave[0].password_file not read from the configuration's directory: %s", cfg.Slaves[0].DSN)
	}
}
