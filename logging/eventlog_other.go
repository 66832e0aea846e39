//go:build !windows

package logging

import (
	"errors"
	"log/slog"
)

// eventLogAvailable: the event log is Windows's.
const eventLogAvailable = false

func newEventLogHandler(string, slog.Level) (slog.Handler, func() error, error) {
	return nil, nil, errors.New("no event log outside Windows")
}
