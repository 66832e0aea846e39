package replicator

import "time"

// Observer is told what the workers do, for metrics. Its methods are called
// from the workers' goroutines and must not block. Status figures (state,
// lag, pending events, log size) are not pushed to it: they come from
// GetStatus, which status and the metrics both read.
type Observer interface {
	// BatchApplied is called after a batch of events was committed on a
	// slave, with the time its cycle took (read, apply, commit).
	BatchApplied(slave string, events int, took time.Duration)
	// Failed is called when a worker stops on an error, with the state it
	// records: conflict, error or unreachable.
	Failed(slave, state string)
}

// observer returns the options' Observer, or one that does nothing.
func (r *Replicator) observer() Observer {
	if r.opts.Observer != nil {
		return r.opts.Observer
	}
	return nopObserver{}
}

type nopObserver struct{}

func (nopObserver) BatchApplied(string, int, time.Duration) {}
func (nopObserver) Failed(string, string)                   {}
