package logging

import (
	"log/slog"

	"golang.org/x/sys/windows/svc/eventlog"
)

// eventLogAvailable: a Windows service logs to the event log.
const eventLogAvailable = true

// eventID is the event id of every goreplica entry; the level is in the
// entry's type (information, warning, error).
const eventID = 1

// newEventLogHandler returns a handler writing to the Application event
// log under source (registered by `goreplica service install`).
func newEventLogHandler(source string, level slog.Level) (slog.Handler, func() error, error) {
	l, err := eventlog.Open(source)
	if err != nil {
		return nil, nil, err
	}
	return &fieldHandler{sink: eventLog{l}, level: level}, l.Close, nil
}

type eventLog struct{ l *eventlog.Log }

func (e eventLog) write(level slog.Level, msg string, fields []field) error {
	text := line(msg, fields)
	switch {
	case level >= slog.LevelError:
		return e.l.Error(eventID, text)
	case level >= slog.LevelWarn:
		return e.l.Warning(eventID, text)
	}
	return e.l.Info(eventID, text)
}
