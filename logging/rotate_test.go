package logging

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFileRotatesBySizeAndKeepsMaxFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "goreplica.log")
	logger, closeLog, err := New(Options{Level: slog.LevelInfo, Format: "text", File: path, MaxSize: 2048, MaxFiles: 3})
	if err != nil {
		t.Fatal(err)
	}
	const lines = 200
	for i := range lines {
		logger.Info("batch applied", "slave", "lyon", "n", i)
	}
	if err := closeLog(); err != nil {
		t.Fatal(err)
	}
	files := []string{path, path + ".1", path + ".2", path + ".3"}
	seen := map[int]bool{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatalf("rotated file: %v", err)
		}
		if len(b) > 2048 {
			t.Errorf("%s holds %d bytes, more than max_size 2048", f, len(b))
		}
		for _, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
			var n int
			if !strings.Contains(l, "msg=\"batch applied\" slave=lyon n=") {
				t.Fatalf("%s: line split or garbled: %q", f, l)
			}
			fmt.Sscanf(l[strings.LastIndex(l, "n=")+2:], "%d", &n)
			seen[n] = true
		}
	}
	if _, err := os.Stat(path + ".4"); err == nil {
		t.Errorf("%s.4 exists: max_files = 3 rotated files", path)
	}
	// The newest lines are kept, the oldest dropped with the oldest file.
	if !seen[lines-1] || seen[0] {
		t.Errorf("kept lines: newest %v (want true), oldest %v (want false)", seen[lines-1], seen[0])
	}
}

func TestFileAppendsAcrossRestarts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "goreplica.log")
	for _, msg := range []string{"first run", "second run"} {
		logger, closeLog, err := New(Options{Format: "json", File: path, MaxSize: 1 << 20, MaxFiles: 1})
		if err != nil {
			t.Fatal(err)
		}
		logger.Info(msg)
		if err := closeLog(); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(b); !strings.Contains(got, `"msg":"first run"`) || !strings.Contains(got, `"msg":"second run"`) {
		t.Errorf("log file after two runs:\n%s", got)
	}
}

func TestUnwritableLogFileIsAnError(t *testing.T) {
	dir := t.TempDir()
	blocker := filepath.Join(dir, "file")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err := New(Options{File: filepath.Join(blocker, "goreplica.log"), MaxSize: 1 << 20, MaxFiles: 1})
	if err == nil || !strings.Contains(err.Error(), "log file") {
		t.Errorf("a log file under a regular file: err = %v, want a log file error", err)
	}
}
