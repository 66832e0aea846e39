package logging

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Options says where the daemon's logs go.
type Options struct {
	Level  slog.Level
	Format string    // "text" or "json", for Stderr and File
	Stderr io.Writer // nil: os.Stderr is not used

	// File, when not empty, receives every line too, rotated when a line
	// would take it past MaxSize bytes; MaxFiles rotated files are kept.
	File     string
	MaxSize  int64
	MaxFiles int

	// Service is the service name when the daemon runs under a service
	// manager ("" in the foreground). As a Windows service the event log
	// (source Service) replaces stderr, which goes nowhere there.
	Service string
}

// New returns the logger Options describe and a function that closes the
// files and connections it opened. Under systemd, when stderr is the
// journal's stream (JOURNAL_STREAM), lines go to the journal through its
// native protocol instead, so that every attribute is a journal field.
func New(o Options) (*slog.Logger, func() error, error) {
	var handlers []slog.Handler
	var closers []func() error
	closeAll := func() error {
		var errs []error
		for _, c := range closers {
			errs = append(errs, c())
		}
		return errors.Join(errs...)
	}
	hopts := &slog.HandlerOptions{Level: o.Level}
	switch {
	case o.Service != "" && eventLogAvailable:
		h, closeLog, err := newEventLogHandler(o.Service, o.Level)
		if err != nil {
			return nil, nil, fmt.Errorf("open the event log for service %s: %w", o.Service, err)
		}
		handlers = append(handlers, h)
		closers = append(closers, closeLog)
	case o.Stderr != nil:
		if h, closeJournal, ok := journalHandler(o.Service, o.Level); ok {
			handlers = append(handlers, h)
			closers = append(closers, closeJournal)
			break
		}
		handlers = append(handlers, formatHandler(o.Format, o.Stderr, hopts))
	}
	if o.File != "" {
		f, err := openRotating(o.File, o.MaxSize, o.MaxFiles)
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("log file: %w", err)
		}
		handlers = append(handlers, formatHandler(o.Format, f, hopts))
		closers = append(closers, f.Close)
	}
	switch len(handlers) {
	case 0:
		return slog.New(slog.DiscardHandler), closeAll, nil
	case 1:
		return slog.New(handlers[0]), closeAll, nil
	}
	return slog.New(slog.NewMultiHandler(handlers...)), closeAll, nil
}

func formatHandler(format string, w io.Writer, o *slog.HandlerOptions) slog.Handler {
	if format == "json" {
		return slog.NewJSONHandler(w, o)
	}
	return slog.NewTextHandler(w, o)
}

// field is one attribute of a record, flattened: groups joined with ".".
type field struct{ key, value string }

// sink writes one record whose attributes fieldHandler has flattened.
type sink interface {
	write(level slog.Level, msg string, fields []field) error
}

// fieldHandler is a slog.Handler that hands each record to a sink as a
// message and flat key/value fields (for the journal and the event log,
// which take text, not a stream of lines).
type fieldHandler struct {
	sink   sink
	level  slog.Leveler
	attrs  []field
	prefix string // open groups, each followed by "."
}

func (h *fieldHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level.Level() }

func (h *fieldHandler) Handle(_ context.Context, r slog.Record) error {
	fs := append([]field(nil), h.attrs...)
	r.Attrs(func(a slog.Attr) bool {
		fs = appendAttr(fs, h.prefix, a)
		return true
	})
	return h.sink.write(r.Level, r.Message, fs)
}

func (h *fieldHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append([]field(nil), h.attrs...)
	for _, a := range as {
		c.attrs = appendAttr(c.attrs, h.prefix, a)
	}
	return &c
}

func (h *fieldHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	c := *h
	c.prefix = h.prefix + name + "."
	return &c
}

func appendAttr(fs []field, prefix string, a slog.Attr) []field {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return fs
	}
	if a.Value.Kind() == slog.KindGroup {
		p := prefix
		if a.Key != "" {
			p += a.Key + "."
		}
		for _, g := range a.Value.Group() {
			fs = appendAttr(fs, p, g)
		}
		return fs
	}
	return append(fs, field{prefix + a.Key, a.Value.String()})
}

// line renders a record as one line of text: the message, then key=value
// for each field, values quoted when they need it.
func line(msg string, fields []field) string {
	var b strings.Builder
	b.WriteString(msg)
	for _, f := range fields {
		b.WriteByte(' ')
		b.WriteString(f.key)
		b.WriteByte('=')
		if needsQuote(f.value) {
			b.WriteString(strconv.Quote(f.value))
		} else {
			b.WriteString(f.value)
		}
	}
	return b.String()
}

func needsQuote(s string) bool {
	if s == "" {
		return true
	}
	for _, r := range s {
		if r <= ' ' || r == '=' || r == '"' || r == utf8.RuneError || r > '~' {
			return true
		}
	}
	return false
}
