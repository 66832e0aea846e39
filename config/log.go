package config

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Log is the [log] section: how much the daemon logs and where, besides
// stderr, the journal (under systemd) or the Windows event log (as a
// Windows service).
type Log struct {
	// Level is "debug", "info", "warn" or "error". The environment
	// variable GOREPLICA_LOG_LEVEL overrides it.
	Level string `toml:"level"`
	// Format is "text" or "json", for stderr and File.
	Format string `toml:"format"`
	// File, when set, receives every line too, rotated by size: when a
	// line would take it past MaxSize it is renamed File.1 (File.1 becomes
	// File.2, and so on) and MaxFiles rotated files are kept.
	File     string `toml:"file"`
	MaxSize  Size   `toml:"max_size"`
	MaxFiles int    `toml:"max_files"`
}

// DefaultLog returns the [log] section holding every default value.
func DefaultLog() Log {
	return Log{Level: "info", Format: "text", MaxSize: Size{Bytes: 100 << 20}, MaxFiles: 5}
}

// LogLevels are the values [log] level takes.
var LogLevels = []string{"debug", "info", "warn", "error"}

func (l Log) validate() []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if !slices.Contains(LogLevels, l.Level) {
		add("log.level: %q is not one of %s", l.Level, strings.Join(LogLevels, ", "))
	}
	if l.Format != "text" && l.Format != "json" {
		add("log.format: %q is not text or json", l.Format)
	}
	switch {
	case l.MaxSize.invalid != "":
		add("log.max_size: %s", l.MaxSize.invalid)
	case l.MaxSize.Bytes < 1<<10:
		add("log.max_size: %s is too small (at least 1KB)", l.MaxSize)
	}
	if l.MaxFiles < 1 {
		add("log.max_files: %d: keep at least 1 rotated file", l.MaxFiles)
	}
	return errs
}

// Size is a number of bytes written as a string with a unit ("10MB",
// "512KB", "1GB"; KB, MB and GB are powers of 1024) or as a bare integer
// number of bytes. Like Duration, a malformed value is kept for Validate to
// report with its path.
type Size struct {
	Bytes   int64
	invalid string
}

var sizeUnits = []struct {
	suffix string
	mult   int64
}{{"GB", 1 << 30}, {"MB", 1 << 20}, {"KB", 1 << 10}, {"B", 1}}

// UnmarshalTOML implements toml.Unmarshaler.
func (s *Size) UnmarshalTOML(v any) error {
	s.Bytes, s.invalid = 0, ""
	switch x := v.(type) {
	case int64:
		if x < 0 {
			s.invalid = fmt.Sprintf("%d is negative", x)
		}
		s.Bytes = x
	case string:
		n, err := parseSize(x)
		if err != nil {
			s.invalid = err.Error()
		}
		s.Bytes = n
	default:
		s.invalid = fmt.Sprintf("%v is not a size: write it as a string such as \"10MB\" or an integer number of bytes", v)
	}
	return nil
}

func parseSize(text string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(text))
	t = strings.Replace(t, "IB", "B", 1) // MiB = MB
	for _, u := range sizeUnits {
		num, ok := strings.CutSuffix(t, u.suffix)
		if !ok {
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
		if err != nil || f < 0 || f*float64(u.mult) > math.MaxInt64/2 {
			break
		}
		return int64(f * float64(u.mult)), nil
	}
	return 0, fmt.Errorf("%q is not a size (examples: \"512KB\", \"10MB\", \"1GB\")", text)
}

// String returns the size with the largest unit that divides it.
func (s Size) String() string {
	for _, u := range sizeUnits {
		if s.Bytes >= u.mult && s.Bytes%u.mult == 0 {
			return strconv.FormatInt(s.Bytes/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(s.Bytes, 10) + "B"
}

// MarshalText implements encoding.TextMarshaler.
func (s Size) MarshalText() ([]byte, error) { return []byte(s.String()), nil }
