package mailer

import (
	"fmt"
	"time"
)

// Kind is the kind of an alert event; it selects the throttle slot and the
// wording of the mail.
type Kind string

// The kinds of alert events. Each problem kind (unreachable, conflict,
// error, lag) is closed by a recovery kind (reachable, recovered, lag_ok),
// which is mailed only when the problem was.
const (
	KindStart       Kind = "start"       // the daemon started
	KindStop        Kind = "stop"        // the daemon stopped cleanly
	KindAbort       Kind = "abort"       // the daemon stopped abnormally
	KindUnreachable Kind = "unreachable" // a slave (or the master) cannot be reached
	KindReachable   Kind = "reachable"   // ... and can be again
	KindConflict    Kind = "conflict"    // a row statement affected no row
	KindApplyError  Kind = "error"       // a batch failed to apply
	KindRecovered   Kind = "recovered"   // a slave applies again after a conflict or error
	KindLag         Kind = "lag"         // lag went above the alert threshold
	KindLagOK       Kind = "lag_ok"      // ... and back under it
	KindCopied      Kind = "copied"      // every table of a slave is copied and caught up
	KindTest        Kind = "test"        // goreplica mail-test; never throttled
)

// Kinds lists every kind a configuration may select, in documentation order
// (KindTest is always sent and not listed).
var Kinds = []Kind{KindStart, KindStop, KindAbort, KindUnreachable, KindReachable,
	KindConflict, KindApplyError, KindRecovered, KindLag, KindLagOK, KindCopied}

// Event is one thing the operator should hear about.
type Event struct {
	Kind Kind
	// Slave is the node the event is about: a slave's name, or the
	// master's for a master outage; "" for daemon-wide events. Each kind
	// and slave is throttled on its own.
	Slave string
	// Time is when it happened; zero means now.
	Time time.Time
	// Summary is one line saying what happened and where; it becomes the
	// first body line and the subject. Empty means a generic line from
	// Kind and Slave.
	Summary string
	// Body is the detail: table, key, txid, SQL, policy, what to run next,
	// configuration summary.
	Body string
}

// closes maps each recovery kind to the problem kinds it closes.
var closes = map[Kind][]Kind{
	KindReachable: {KindUnreachable},
	KindRecovered: {KindConflict, KindApplyError},
	KindLagOK:     {KindLag},
}

// isProblem reports whether k opens a problem that a recovery kind closes.
func isProblem(k Kind) bool {
	switch k {
	case KindUnreachable, KindConflict, KindApplyError, KindLag:
		return true
	}
	return false
}

// noun returns how a digest counts events of kind k: "conflict", "apply error".
func noun(k Kind, n int) string {
	var s string
	switch k {
	case KindStart:
		s = "start"
	case KindStop:
		s = "stop"
	case KindAbort:
		s = "abnormal stop"
	case KindUnreachable:
		s = "unreachable report"
	case KindReachable:
		s = "reachable report"
	case KindConflict:
		s = "conflict"
	case KindApplyError:
		s = "apply error"
	case KindRecovered:
		s = "recovery"
	case KindLag:
		s = "lag alert"
	case KindLagOK:
		s = "lag recovery"
	default:
		s = string(k) + " event"
	}
	if n == 1 {
		return s
	}
	if s == "recovery" {
		return "recoveries"
	}
	return s + "s"
}

// defaultSummary is the first line used when an event carries none.
func defaultSummary(k Kind, slave string) string {
	who := slave
	if who == "" {
		who = "a node"
	}
	switch k {
	case KindStart:
		return "goreplica started"
	case KindStop:
		return "goreplica stopped"
	case KindAbort:
		return "goreplica stopped abnormally"
	case KindUnreachable:
		return who + " unreachable"
	case KindReachable:
		return who + " reachable again"
	case KindConflict:
		return "conflict on " + who
	case KindApplyError:
		return "apply error on " + who
	case KindRecovered:
		return who + " applying again"
	case KindLag:
		return "lag on " + who + " above the alert threshold"
	case KindLagOK:
		return "lag on " + who + " back under the alert threshold"
	case KindTest:
		return "goreplica test mail"
	}
	if slave == "" {
		return fmt.Sprintf("goreplica %s event", k)
	}
	return fmt.Sprintf("%s event on %s", k, slave)
}
