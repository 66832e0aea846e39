package logging

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// recorder is a sink that keeps what it is given.
type recorder struct {
	levels []slog.Level
	lines  []string
	fields [][]field
}

func (r *recorder) write(level slog.Level, msg string, fs []field) error {
	r.levels = append(r.levels, level)
	r.lines = append(r.lines, line(msg, fs))
	r.fields = append(r.fields, fs)
	return nil
}

func TestFieldHandlerFlattensAttrsAndGroups(t *testing.T) {
	rec := &recorder{}
	logger := slog.New(&fieldHandler{sink: rec, level: slog.LevelInfo})
	logger.Debug("not shown")
	child := logger.With("slave", "lyon").WithGroup("batch")
	child.Warn("slave stopped", "txid", 824, slog.Group("key", "id", "2"), "error", `pq: column "v" does not exist`)
	if len(rec.lines) != 1 {
		t.Fatalf("records = %q, want the warning only", rec.lines)
	}
	want := `slave stopped slave=lyon batch.txid=824 batch.key.id=2 batch.error="pq: column \"v\" does not exist"`
	if rec.lines[0] != want {
		t.Errorf("line = %s\nwant   %s", rec.lines[0], want)
	}
	if rec.levels[0] != slog.LevelWarn {
		t.Errorf("level = %v", rec.levels[0])
	}
}

func TestStderrFormats(t *testing.T) {
	for _, format := range []string{"text", "json"} {
		var b bytes.Buffer
		logger, closeLog, err := New(Options{Level: slog.LevelInfo, Format: format, Stderr: &b})
		if err != nil {
			t.Fatal(err)
		}
		logger.Info("connected", "slave", "lyon")
		closeLog()
		want := map[string]string{"text": `msg=connected slave=lyon`, "json": `"msg":"connected","slave":"lyon"`}[format]
		if !strings.Contains(b.String(), want) {
			t.Errorf("format %s: %q does not contain %q", format, b.String(), want)
		}
	}
}
