package pgserver

import (
	"io"
	"os"
	"time"
)

// tailInterval is how often the server log file is copied to Options.Log.
const tailInterval = 100 * time.Millisecond

// tailer copies what the postmaster appends to its log file to a writer,
// from one goroutine that it starts and stops.
type tailer struct {
	path   string
	w      io.Writer
	offset int64
	// started and stopped are guarded by the server's mutex.
	started, stopped bool
	stop             chan struct{}
	done             chan struct{}
}

func newTailer(path string, w io.Writer) *tailer {
	return &tailer{path: path, w: w, stop: make(chan struct{}), done: make(chan struct{})}
}

func (t *tailer) run() {
	defer close(t.done)
	tick := time.NewTicker(tailInterval)
	defer tick.Stop()
	for {
		select {
		case <-t.stop:
			t.copy() // what was written last, such as the shutdown messages
			return
		case <-tick.C:
			t.copy()
		}
	}
}

// copy writes the bytes appended since the last call. Errors are ignored:
// the log file is only missing before the first start, and a failing
// writer must not stop the server.
func (t *tailer) copy() {
	f, err := os.Open(t.path)
	if err != nil {
		return
	}
	defer f.Close()
	if _, err := f.Seek(t.offset, io.SeekStart); err != nil {
		return
	}
	n, _ := io.Copy(t.w, f)
	t.offset += n
}

// startTail starts copying the log to Options.Log, once. Callers hold
// s.mu or own s alone (in Start).
func (s *Server) startTail() {
	if s.tail != nil && !s.tail.started {
		s.tail.started = true
		go s.tail.run()
	}
}

// stopTail copies the rest of the log and stops; it waits for the
// goroutine, so that Options.Log is not written after Close returns.
func (s *Server) stopTail() {
	if s.tail != nil && s.tail.started && !s.tail.stopped {
		s.tail.stopped = true
		close(s.tail.stop)
		<-s.tail.done
	}
}
