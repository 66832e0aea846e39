package logging

import (
	"bytes"
	"encoding/binary"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// journalSocket is where journald takes native-protocol datagrams.
const journalSocket = "/run/systemd/journal/socket"

// Journal field values are cut to these sizes so that a datagram stays
// under the socket's send buffer (journald would then need a memfd).
const (
	journalMaxMessage = 64 << 10
	journalMaxField   = 16 << 10
)

// journalHandler returns a handler writing to the journal when stderr is
// connected to it: systemd sets JOURNAL_STREAM to the device and inode of
// that stream, and a program whose stderr matches may switch to the native
// protocol (systemd.exec(5), "$JOURNAL_STREAM").
func journalHandler(identifier string, level slog.Level) (slog.Handler, func() error, bool) {
	if !stderrIsJournal(os.Getenv("JOURNAL_STREAM")) {
		return nil, nil, false
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: journalSocket, Net: "unixgram"})
	if err != nil {
		return nil, nil, false
	}
	if identifier == "" {
		identifier = "goreplica"
	}
	j := &journal{conn: conn, identifier: identifier}
	return &fieldHandler{sink: j, level: level}, conn.Close, true
}

func stderrIsJournal(stream string) bool {
	dev, ino, ok := strings.Cut(stream, ":")
	if !ok {
		return false
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(os.Stderr.Fd()), &st); err != nil {
		return false
	}
	return strconv.FormatUint(uint64(st.Dev), 10) == dev && strconv.FormatUint(st.Ino, 10) == ino
}

// journal sends records to journald, one datagram each: MESSAGE is the
// whole line (as journalctl shows it), PRIORITY the syslog level, and every
// attribute a field of its own (slave=lyon becomes SLAVE=lyon), so that
// `journalctl -u goreplica SLAVE=lyon` selects one slave's lines.
type journal struct {
	conn       *net.UnixConn
	identifier string
}

func (j *journal) write(level slog.Level, msg string, fields []field) error {
	var b bytes.Buffer
	journalField(&b, "MESSAGE", shortenField(line(msg, fields), journalMaxMessage))
	journalField(&b, "PRIORITY", strconv.Itoa(journalPriority(level)))
	journalField(&b, "SYSLOG_IDENTIFIER", j.identifier)
	for _, f := range fields {
		journalField(&b, journalName(f.key), shortenField(f.value, journalMaxField))
	}
	_, err := j.conn.Write(b.Bytes())
	return err
}

// journalPriority maps a slog level to a syslog priority.
func journalPriority(l slog.Level) int {
	switch {
	case l >= slog.LevelError:
		return 3 // err
	case l >= slog.LevelWarn:
		return 4 // warning
	case l >= slog.LevelInfo:
		return 6 // info
	}
	return 7 // debug
}

// journalField appends one field in the native protocol's form: KEY=value
// and a newline, or, for a value holding a newline, KEY, a newline, the
// value's length as a little-endian uint64, the value and a newline.
func journalField(b *bytes.Buffer, key, value string) {
	b.WriteString(key)
	if !strings.Contains(value, "\n") {
		b.WriteByte('=')
		b.WriteString(value)
		b.WriteByte('\n')
		return
	}
	b.WriteByte('\n')
	_ = binary.Write(b, binary.LittleEndian, uint64(len(value)))
	b.WriteString(value)
	b.WriteByte('\n')
}

// journalReserved are the fields goreplica sets itself or that mean
// something to journald; an attribute of that name is prefixed ATTR_.
var journalReserved = map[string]bool{
	"MESSAGE": true, "MESSAGE_ID": true, "PRIORITY": true, "SYSLOG_IDENTIFIER": true,
	"SYSLOG_FACILITY": true, "SYSLOG_PID": true, "SYSLOG_TIMESTAMP": true,
	"CODE_FILE": true, "CODE_LINE": true, "CODE_FUNC": true, "ERRNO": true,
	"INVOCATION_ID": true, "USER_INVOCATION_ID": true,
}

// journalName turns an attribute key into a valid journal field name:
// upper case letters, digits and underscores, starting with a letter, at
// most 64 characters.
func journalName(key string) string {
	var b strings.Builder
	for _, r := range strings.ToUpper(key) {
		if (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	n := b.String()
	if n == "" || n[0] < 'A' || n[0] > 'Z' || journalReserved[n] {
		n = "ATTR_" + strings.TrimLeft(n, "_")
	}
	if len(n) > 64 {
		n = n[:64]
	}
	return n
}

func shortenField(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "... (" + strconv.Itoa(len(s)) + " bytes)"
}
