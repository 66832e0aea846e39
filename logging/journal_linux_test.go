package logging

import (
	"bytes"
	"encoding/binary"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// parseJournal decodes one datagram of journald's native protocol.
func parseJournal(t *testing.T, b []byte) map[string]string {
	t.Helper()
	out := map[string]string{}
	for len(b) > 0 {
		i := bytes.IndexAny(b, "=\n")
		if i < 0 {
			t.Fatalf("field without end: %q", b)
		}
		key := string(b[:i])
		if b[i] == '=' {
			j := bytes.IndexByte(b[i:], '\n')
			out[key] = string(b[i+1 : i+j])
			b = b[i+j+1:]
			continue
		}
		n := binary.LittleEndian.Uint64(b[i+1 : i+9])
		out[key] = string(b[i+9 : i+9+int(n)])
		if b[i+9+int(n)] != '\n' {
			t.Fatalf("binary field %s not followed by a newline", key)
		}
		b = b[i+10+int(n):]
	}
	return out
}

func TestJournalDatagrams(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "journal.socket")
	srv, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	logger := slog.New(&fieldHandler{sink: &journal{conn: conn, identifier: "goreplica-paris"}, level: slog.LevelInfo})
	logger.Error("slave stopped", "slave", "lyon", "error", "apply failed\nstatement: INSERT ...", "message", "clash", "2pc", "x")

	buf := make([]byte, 1<<16)
	srv.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := srv.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	got := parseJournal(t, buf[:n])
	want := map[string]string{
		"PRIORITY":          "3",
		"SYSLOG_IDENTIFIER": "goreplica-paris",
		"SLAVE":             "lyon",
		"ERROR":             "apply failed\nstatement: INSERT ...",
		"ATTR_MESSAGE":      "clash",
		"ATTR_2PC":          "x",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("field %s = %q, want %q", k, got[k], v)
		}
	}
	if !strings.HasPrefix(got["MESSAGE"], "slave stopped slave=lyon error=") {
		t.Errorf("MESSAGE = %q", got["MESSAGE"])
	}
}

func TestJournalOnlyWhenStderrIsTheJournalStream(t *testing.T) {
	for _, stream := range []string{"", "garbage", "1:2"} {
		if stderrIsJournal(stream) {
			t.Errorf("JOURNAL_STREAM=%q taken for stderr", stream)
		}
	}
}
