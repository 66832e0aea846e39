package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/goreplica/goreplica/config"
	"github.com/goreplica/goreplica/replicator"
)

// load parses a verb's flags (-c and those extra adds) and loads the
// configuration.
func (c *CLI) load(args []string, extra func(*flag.FlagSet)) (*config.Config, error) {
	fs := c.flags()
	path := configFlag(fs)
	if extra != nil {
		extra(fs)
	}
	if err := c.parse(fs, args, 0); err != nil {
		return nil, err
	}
	return config.Load(config.Resolve(*path))
}

func (c *CLI) runInit(ctx context.Context, args []string) error {
	stdout := c.Stdout
	cfg, err := c.load(args, nil)
	if err != nil {
		return err
	}
	if problems := replicator.CheckPooling(ctx, replicatorOptions(cfg)); len(problems) > 0 {
		return fmt.Errorf("init:\n  %w", indent(errors.Join(problems...)))
	}
	rep, err := replicator.Init(ctx, replicatorOptions(cfg), c.TriggerSQL)
	if err != nil {
		return fmt.Errorf("init:\n  %w", indent(err))
	}
	for _, w := range rep.Warnings {
		fmt.Fprintln(stdout, "warning: "+w)
	}
	fmt.Fprintf(stdout, "master %s: capturing %d tables: %s\n", cfg.Master.Name, len(rep.Tables), strings.Join(rep.Tables, ", "))
	for _, t := range rep.Created {
		fmt.Fprintf(stdout, "created on slave %s\n", t)
	}
	printCopies(stdout, rep.Copies)
	for _, t := range rep.Removed {
		fmt.Fprintf(stdout, "master %s: table %s no longer matched: capture removed\n", cfg.Master.Name, t)
	}
	fmt.Fprintf(stdout, "slaves registered: %s\n", strings.Join(rep.Slaves, ", "))
	fmt.Fprintf(stdout, "ready: start the daemon with 'goreplica run -c %s'\n", cfg.Path)
	return nil
}

// indent puts each joined error on its own indented line.
func indent(err error) error {
	return errors.New(strings.ReplaceAll(err.Error(), "\n", "\n  "))
}

// Exit codes of status (and the states behind them), for scripts.
const (
	statusOK          = 0 // every slave is running
	statusUnreachable = 3 // the master cannot be reached
	statusNotRunning  = 4 // a slave is stopped, in conflict or error, unreachable, not registered or not configured
)

func (c *CLI) runStatus(ctx context.Context, args []string) error {
	stdout := c.Stdout
	var asJSON bool
	cfg, err := c.load(args, func(fs *flag.FlagSet) {
		fs.BoolVar(&asJSON, "json", false, "print JSON (with an \"error\" field when status cannot be read)")
	})
	if err == nil {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		var st *replicator.Status
		if st, err = replicator.GetStatus(cctx, replicatorOptions(cfg)); err == nil {
			if asJSON {
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(st); err != nil {
					return err
				}
			} else {
				printStatus(stdout, st)
			}
			return ExitStatus(statusCode(st))
		}
	}
	if asJSON && !errors.As(err, new(UsageError)) && !errors.Is(err, errHelpShown) {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(struct {
			Error string `json:"error"`
		}{err.Error()})
	}
	return err
}

// statusCode is status's exit code for st.
func statusCode(st *replicator.Status) int {
	if !st.Reachable {
		return statusUnreachable
	}
	for _, s := range st.Slaves {
		if s.State != replicator.StateRunning || !s.Configured {
			return statusNotRunning
		}
	}
	return statusOK
}

func printStatus(w io.Writer, st *replicator.Status) {
	for _, p := range st.Warnings {
		fmt.Fprintf(w, "WARNING: %s\n", p)
	}
	if !st.Reachable {
		what := "UNREACHABLE"
		if st.ConfigError {
			what = "CANNOT CONNECT, CHECK ITS DSN"
		}
		fmt.Fprintf(w, "master %s: %s: %s\n", st.Master, what, st.Error)
	} else {
		fmt.Fprintf(w, "master %s: %d tables captured, %d events in the log (%s)\n", st.Master, st.TablesCount, st.LogRows, bytesText(st.LogBytes))
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SLAVE\tSTATE\tLAG\tPENDING\tBATCH\tIN-DOUBT\tLAST ERROR")
	for _, s := range st.Slaves {
		lastErr := s.LastError
		if lastErr == "" {
			lastErr = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%.1fs\t%d\t%d\t%d\t%s\n", s.Name, s.State, s.LagSeconds, s.PendingEvents, s.AppliedBatch, len(s.InDoubt), lastErr)
	}
	tw.Flush()
	printTables(w, st)
	for _, s := range st.Slaves {
		if !s.Configured {
			fmt.Fprintf(w, "slave %s: registered on master %s but not in the configuration: it holds back purge of the log; 'goreplica unregister %s' removes it\n", s.Name, st.Master, s.Name)
		}
		for _, g := range s.InDoubt {
			fmt.Fprintf(w, "slave %s: prepared transaction %s is in doubt ('goreplica run' commits it)\n", s.Name, g)
		}
	}
}

func (c *CLI) runUninstall(ctx context.Context, args []string) error {
	stdout := c.Stdout
	var yes bool
	cfg, err := c.load(args, func(fs *flag.FlagSet) {
		fs.BoolVar(&yes, "yes", false, "confirm: remove goreplica's triggers and schema replica (with its log) from master and slaves")
	})
	if err != nil {
		return err
	}
	if !yes {
		return UsageError{Verb: "uninstall", Msg: "uninstall removes every goreplica trigger and the replica schema, with the change log, from the master and all slaves: run again with --yes to confirm"}
	}
	if err := refuseWhileApplying(ctx, cfg); err != nil {
		return err
	}
	if err := replicator.Uninstall(ctx, replicatorOptions(cfg)); err != nil {
		return fmt.Errorf("uninstall:\n  %w", indent(err))
	}
	fmt.Fprintf(stdout, "goreplica removed from master %s and slaves %s\n", cfg.Master.Name, strings.Join(slaveNames(cfg), ", "))
	return nil
}

// bytesText prints a size in the largest unit that keeps it above 1.
func bytesText(n int64) string {
	units := []string{"B", "kB", "MB", "GB", "TB"}
	f, i := float64(n), 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%d B", n)
	}
	return fmt.Sprintf("%.1f %s", f, units[i])
}

func (c *CLI) runUnregister(ctx context.Context, args []string) error {
	fs := c.flags()
	path := configFlag(fs)
	if err := c.parse(fs, args, 1); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return UsageError{Verb: "unregister", Msg: "unregister: name the slave to unregister"}
	}
	cfg, err := config.Load(config.Resolve(*path))
	if err != nil {
		return err
	}
	name := fs.Arg(0)
	if err := replicator.Unregister(ctx, replicatorOptions(cfg), name); err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "slave %s unregistered from master %s: the log no longer waits for it\n", name, cfg.Master.Name)
	return nil
}

// refuseWhileApplying refuses to uninstall while a daemon applies to any
// slave: it would retry for ever against a master without its schema.
func refuseWhileApplying(ctx context.Context, cfg *config.Config) error {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	st, err := replicator.GetStatus(cctx, replicatorOptions(cfg))
	if errors.Is(err, replicator.ErrNotInstalled) || (err == nil && !st.Reachable) {
		return nil // Uninstall says what it can and cannot reach
	}
	if err != nil {
		return fmt.Errorf("uninstall: %w", err)
	}
	var busy []string
	for _, s := range st.Slaves {
		if s.Applying {
			busy = append(busy, s.Name)
		}
	}
	if len(busy) > 0 {
		return fmt.Errorf("uninstall: a daemon is applying to slave %s: stop it first ('goreplica service stop', or stop 'goreplica run'), then uninstall", strings.Join(busy, ", "))
	}
	return nil
}
