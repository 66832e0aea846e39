package config

import (
	"strings"
	"testing"
)

func TestLogSectionProblemsReportedWithTheirPaths(t *testing.T) {
	_, err := Parse(base + `
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
	cfg, err := Parse(base)
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
			cfg, err := Parse(base + "\n[log]\nmax_size = " + tt.toml + "\n")
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

// base is the smallest valid configuration.
const base = `
[master]
name = "paris"
dsn = "host=a dbname=b"
[[slave]]
name = "lyon"
dsn = "host=c dbname=b"
`
