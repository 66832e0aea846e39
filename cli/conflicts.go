package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/user"
	"text/tabwriter"
	"time"

	"github.com/goreplica/goreplica/replicator"
)

// runConflicts lists the conflicts recorded in the slaves' replica.conflicts.
func (c *CLI) runConflicts(ctx context.Context, args []string) error {
	var slave string
	var asJSON bool
	cfg, err := c.load(args, func(fs *flag.FlagSet) {
		fs.StringVar(&slave, "slave", "", "only this slave's conflicts")
		fs.BoolVar(&asJSON, "json", false, "print JSON: one object per conflict")
	})
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	recs, err := replicator.Conflicts(cctx, replicatorOptions(cfg), slave)
	if err != nil {
		return err
	}
	if asJSON {
		if recs == nil {
			recs = []replicator.ConflictRecord{}
		}
		enc := json.NewEncoder(c.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(recs)
	}
	if len(recs) == 0 {
		fmt.Fprintln(c.Stdout, "no conflicts recorded")
		return nil
	}
	tw := tabwriter.NewWriter(c.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SLAVE\tAT\tMASTER\tTXID\tTABLE\tOPERATION\tKIND\tPOLICY\tKEY\tBY\tSTATEMENT")
	for _, r := range recs {
		by := r.By
		if by == "" {
			by = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Slave, r.At.Local().Format("2006-01-02 15:04:05"),
			r.Master, r.TxID, r.Table, r.Operation, r.Kind, r.Policy, oneLine(r.Key, 60), by, oneLine(r.Statement, 120))
	}
	return tw.Flush()
}

// oneLine cuts s to n bytes on one line, for a table cell.
func oneLine(s string, n int) string {
	b := []byte(s)
	for i, ch := range b {
		if ch == '\n' || ch == '\t' || ch == '\r' {
			b[i] = ' '
		}
	}
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}

// runSkip skips the source transaction a slave stopped on.
func (c *CLI) runSkip(ctx context.Context, args []string) error {
	var slave, txid string
	cfg, err := c.load(args, func(fs *flag.FlagSet) {
		fs.StringVar(&slave, "slave", "", "the slave stopped on a conflict (required)")
		fs.StringVar(&txid, "txid", "", "the source transaction to skip: refused unless it is the one the slave stopped on")
	})
	if err != nil {
		return err
	}
	if slave == "" {
		return UsageError{Verb: "skip", Msg: "skip: --slave NAME is required"}
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	s, err := replicator.Skip(cctx, replicatorOptions(cfg), slave, txid, whoAmI())
	if errors.Is(err, replicator.ErrNotStopped) {
		return fmt.Errorf("skip: %w: nothing to skip", err)
	}
	if err != nil {
		return fmt.Errorf("skip: %w", err)
	}
	fmt.Fprintf(c.Stdout, "slave %s: transaction %s of master %s (its conflict: %s in %s %s) will not be applied; recorded in replica.conflicts on %s.\n",
		s.Slave, s.TxID, s.Master, s.Kind, s.Table, s.Key, s.Slave)
	fmt.Fprintf(c.Stdout, "A running daemon resumes at its next retry (within replicate.max_backoff, %s); otherwise at its next start.\n", cfg.Replicate.MaxBackoff.Duration)
	return nil
}

// whoAmI names the person running a verb, for the records: user@host.
func whoAmI() string {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	host, err := os.Hostname()
	if err != nil {
		host = "unknown"
	}
	return name + "@" + host
}
