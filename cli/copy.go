package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/goreplica/goreplica/config"
	"github.com/goreplica/goreplica/replicator"
)

// loadWithTables parses a verb's flags, which take table names after them,
// and loads the configuration.
func (c *CLI) loadWithTables(args []string, extra func(*flag.FlagSet)) (*config.Config, []string, error) {
	fs := c.flags()
	path := configFlag(fs)
	if extra != nil {
		extra(fs)
	}
	if err := c.parse(fs, args, -1); err != nil {
		return nil, nil, err
	}
	name := strings.TrimPrefix(fs.Name(), "goreplica ")
	if fs.NArg() == 0 {
		return nil, nil, UsageError{Verb: name, Msg: name + ": name at least one table (schema.table)"}
	}
	cfg, err := config.Load(config.Resolve(*path))
	return cfg, fs.Args(), err
}

func (c *CLI) runAdd(ctx context.Context, args []string) error {
	var mode string
	cfg, tables, err := c.loadWithTables(args, func(fs *flag.FlagSet) {
		fs.StringVar(&mode, "copy", "", "when a slave's table already holds rows: truncate, merge or skip (default: replicate.copy)")
	})
	if err != nil {
		return err
	}
	if mode != "" && !replicator.ValidCopyMode(mode) {
		return UsageError{Verb: "add", Msg: fmt.Sprintf("add: --copy %q: must be truncate, merge or skip", mode)}
	}
	rep, err := replicator.Add(ctx, replicatorOptions(cfg), tables, mode)
	if err != nil {
		return fmt.Errorf("add:\n  %w", indent(err))
	}
	for _, w := range rep.Warnings {
		fmt.Fprintln(c.Stdout, "warning: "+w)
	}
	for _, t := range rep.Created {
		fmt.Fprintf(c.Stdout, "created on slave %s\n", t)
	}
	printCopies(c.Stdout, rep.Copies)
	if len(rep.Tables) > 0 {
		fmt.Fprintf(c.Stdout, "master %s: capturing %s; the daemon copies them ('goreplica wait' waits for it)\n", cfg.Master.Name, strings.Join(rep.Tables, ", "))
	}
	return nil
}

func (c *CLI) runRemove(ctx context.Context, args []string) error {
	cfg, tables, err := c.loadWithTables(args, nil)
	if err != nil {
		return err
	}
	removed, err := replicator.Remove(ctx, replicatorOptions(cfg), tables)
	if len(removed) > 0 {
		fmt.Fprintf(c.Stdout, "master %s: no longer replicating %s (triggers and pending changes dropped; the slaves keep their rows)\n", cfg.Master.Name, strings.Join(removed, ", "))
		fmt.Fprintln(c.Stdout, "remove them from replicate.tables too, or the next 'goreplica init' captures them again")
	}
	if err != nil {
		return fmt.Errorf("remove:\n  %w", indent(err))
	}
	return nil
}

// printCopies prints how each table new to a slave gets its rows.
func printCopies(w io.Writer, copies []string) {
	for _, cp := range copies {
		slave, rest, _ := strings.Cut(cp, ": ")
		if strings.HasSuffix(rest, "("+replicator.CopySkip+")") {
			fmt.Fprintf(w, "slave %s: %s: no copy, the slave holds its rows (copy = skip)\n", slave, strings.TrimSuffix(rest, " ("+replicator.CopySkip+")"))
			continue
		}
		fmt.Fprintf(w, "slave %s: %s: copied online by the daemon, copy mode %s\n", slave, strings.TrimSuffix(rest, ")")[:strings.LastIndex(rest, " (")],
			strings.TrimSuffix(rest[strings.LastIndex(rest, " (")+2:], ")"))
	}
}

// waitPoll is how often wait reads the status.
const waitPoll = 250 * time.Millisecond

// Exit codes of wait.
const (
	waitDone   = 0
	waitFailed = 1
)

// waitOutcome decides, from a status, whether every table on every slave
// is ok (done), and otherwise what is wrong (a table in error, a slave
// that cannot be read: failed) or still under way (pending).
func waitOutcome(st *replicator.Status) (done bool, failed, pending []string) {
	if !st.Reachable {
		return false, nil, []string{"master " + st.Master + ": " + st.Error}
	}
	for _, s := range st.Slaves {
		if !s.Configured {
			continue
		}
		if s.Tables == nil {
			pending = append(pending, fmt.Sprintf("slave %s: %s", s.Name, s.State))
			continue
		}
		for _, t := range s.Tables {
			switch t.State {
			case replicator.TableOK:
			case replicator.TableError:
				failed = append(failed, fmt.Sprintf("slave %s: table %s: error: %s", s.Name, t.Name, t.Error))
			default:
				pending = append(pending, fmt.Sprintf("slave %s: table %s: %s%s", s.Name, t.Name, t.State, progressText(t)))
			}
		}
	}
	return len(failed) == 0 && len(pending) == 0, failed, pending
}

// progressText is a copy's progress, " (rows done/estimated, rate)".
func progressText(t replicator.TableStatus) string {
	if t.State != replicator.TableCopying {
		return ""
	}
	s := fmt.Sprintf(" (%d/%d rows", t.RowsCopied, t.RowsTotal)
	if t.Rate > 0 {
		s += fmt.Sprintf(", %.0f rows/s", t.Rate)
	}
	return s + ")"
}

func (c *CLI) runWait(ctx context.Context, args []string) error {
	var timeout time.Duration
	cfg, err := c.load(args, func(fs *flag.FlagSet) {
		fs.DurationVar(&timeout, "timeout", 30*time.Minute, "give up (exit 1) after this long")
	})
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		st, err := replicator.GetStatus(cctx, replicatorOptions(cfg))
		cancel()
		if err != nil {
			return fmt.Errorf("wait: %w", err)
		}
		done, failed, pending := waitOutcome(st)
		switch {
		case done:
			fmt.Fprintln(c.Stdout, "every table is ok on every slave")
			return ExitStatus(waitDone)
		case len(failed) > 0:
			for _, f := range failed {
				fmt.Fprintln(c.Stdout, f)
			}
			return ExitStatus(waitFailed)
		case !time.Now().Before(deadline):
			fmt.Fprintf(c.Stdout, "not done after %s:\n", timeout)
			for _, p := range pending {
				fmt.Fprintln(c.Stdout, "  "+p)
			}
			return ExitStatus(waitFailed)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(min(waitPoll, time.Until(deadline))):
		}
	}
}

// printTables prints the tables of each slave that are not ok, or one line
// per slave when all are.
func printTables(w io.Writer, st *replicator.Status) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	header := false
	for _, s := range st.Slaves {
		ok := 0
		for _, t := range s.Tables {
			if t.State == replicator.TableOK {
				ok++
				continue
			}
			if !header {
				fmt.Fprintln(tw, "SLAVE\tTABLE\tSTATE\tROWS\tMODE\tERROR")
				header = true
			}
			rows := "-"
			if t.State == replicator.TableCopying {
				rows = strings.TrimSuffix(strings.TrimPrefix(progressText(t), " ("), ")")
			}
			e := t.Error
			if e == "" {
				e = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, t.Name, t.State, rows, t.Mode, e)
		}
		if ok > 0 && ok == len(s.Tables) && header {
			fmt.Fprintf(tw, "%s\t(all %d tables)\tok\t\t\t\n", s.Name, ok)
		}
	}
	tw.Flush()
	if !header && len(st.Slaves) > 0 && st.Reachable {
		fmt.Fprintln(w, "tables: every table is ok on every slave")
	}
}
