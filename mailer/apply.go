package mailer

import (
	"fmt"
	"strings"
)

// Apply describes a conflict or an apply error on one slave, with what the
// operator needs to act on it. Its Event method words the mail, so that
// every conflict mail reads the same way.
type Apply struct {
	Slave string
	Table string // schema.table
	Key   string // the primary key, e.g. "(id)=(42)"
	TxID  string // the source transaction; "" when unknown
	SQL   string // the statement as logged on the master
	// Reason is the conflict ("insert_exists", "update_missing",
	// "delete_missing"); for an apply error, Err says what failed.
	Reason string
	Err    error
	Policy string // the table's policy: "stop", "skip" or "resync"
	// Next is what the operator can run; empty means a suggestion from
	// Policy that names ConfigPath.
	Next       string
	ConfigPath string
}

// maxSQL bounds the statement quoted in a mail.
const maxSQL = 4 << 10

var reasons = map[string]string{
	"insert_exists":  "the row to insert is already on the slave",
	"update_missing": "the row to update is not on the slave",
	"delete_missing": "the row to delete is not on the slave",
	"multiple_rows":  "the statement touched more than one row on the slave",
}

// Event returns the mail event: KindApplyError when Err is set, otherwise
// KindConflict.
func (a Apply) Event() Event {
	e := Event{Kind: KindConflict, Slave: a.Slave}
	where := a.Table
	if a.Key != "" {
		where += " " + a.Key
	}
	if a.Err != nil {
		e.Kind = KindApplyError
		msg, _, _ := strings.Cut(a.Err.Error(), "\n")
		e.Summary = fmt.Sprintf("apply error on %s: %s: %s", a.Slave, where, msg)
	} else {
		e.Summary = fmt.Sprintf("conflict on %s: %s in %s", a.Slave, a.Reason, where)
	}
	var b strings.Builder
	line := func(label, v string) {
		if v != "" {
			fmt.Fprintf(&b, "%-7s %s\n", label+":", v)
		}
	}
	line("slave", a.Slave)
	line("table", a.Table)
	line("key", a.Key)
	line("txid", a.TxID)
	if a.Err != nil {
		line("error", a.Err.Error())
	} else if r := reasons[a.Reason]; r != "" {
		line("reason", a.Reason+" ("+r+")")
	} else {
		line("reason", a.Reason)
	}
	line("policy", a.policy())
	if a.SQL != "" {
		fmt.Fprintf(&b, "\nstatement:\n%s\n", truncate(a.SQL, maxSQL))
	}
	if next := a.next(); next != "" {
		fmt.Fprintf(&b, "\nnext:\n%s\n", next)
	}
	e.Body = b.String()
	return e
}

func (a Apply) policy() string {
	switch a.Policy {
	case "stop":
		return fmt.Sprintf("stop: the batch was rolled back and %s is halted; the other slaves go on, nothing is lost, and %s retries after its back-off", a.Slave, a.Slave)
	case "skip":
		return fmt.Sprintf("skip: this statement was recorded in replica.conflicts on %s and the rest of the transaction applied", a.Slave)
	case "resync":
		return fmt.Sprintf("resync: the master's current row was copied to %s and the statement recorded in replica.conflicts", a.Slave)
	}
	return a.Policy
}

func (a Apply) next() string {
	if a.Next != "" {
		return a.Next
	}
	cfg := a.ConfigPath
	if cfg == "" {
		cfg = "FILE"
	}
	switch a.Policy {
	case "stop":
		next := fmt.Sprintf("goreplica status -c %s\nFix the row on %s (or on the master); goreplica applies again at its next retry and mails when it does.", cfg, a.Slave)
		if a.TxID != "" {
			next += fmt.Sprintf("\nOr leave that one source transaction out: goreplica skip -c %s --slave %s --txid %s", cfg, a.Slave, a.TxID)
		}
		return next
	case "skip":
		return fmt.Sprintf("Nothing stops; check %s on %s against the master when convenient (replica.conflicts on %s lists what was skipped).", a.Table, a.Slave, a.Slave)
	case "resync":
		return fmt.Sprintf("Nothing is required; goreplica status -c %s shows the slave.", cfg)
	}
	return ""
}
