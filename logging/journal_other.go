//go:build !linux

package logging

import "log/slog"

// journalHandler reports that there is no journal outside Linux.
func journalHandler(string, slog.Level) (slog.Handler, func() error, bool) { return nil, nil, false }
