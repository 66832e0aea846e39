package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/goreplica/goreplica/config"
	"github.com/goreplica/goreplica/replicator"
)

// Nagios plugin return codes
// (https://nagios-plugins.org/doc/guidelines.html#AEN78).
const (
	checkOK       = 0
	checkWarning  = 1
	checkCritical = 2
	checkUnknown  = 3
)

var checkLabels = [...]string{"OK", "WARNING", "CRITICAL", "UNKNOWN"}

// runCheck is a Nagios/Icinga plugin: it reads the master as status does
// and prints one line with performance data, exiting 0, 1, 2 or 3.
func (c *CLI) runCheck(ctx context.Context, args []string) error {
	fs := c.flags()
	path := configFlag(fs)
	warn := fs.Duration("warning", 30*time.Second, "lag from which the check is WARNING")
	crit := fs.Duration("critical", 5*time.Minute, "lag from which the check is CRITICAL")
	timeout := fs.Duration("timeout", 20*time.Second, "how long the check may take before it is UNKNOWN")
	if err := c.parse(fs, args, 0); err != nil {
		if errors.Is(err, errHelpShown) {
			return err
		}
		fmt.Fprintf(c.Stdout, "GOREPLICA UNKNOWN - %v\n", err)
		return ExitStatus(checkUnknown)
	}
	if *warn <= 0 || *crit < *warn {
		fmt.Fprintf(c.Stdout, "GOREPLICA UNKNOWN - --warning (%s) must be positive and at most --critical (%s)\n", *warn, *crit)
		return ExitStatus(checkUnknown)
	}
	cfg, err := config.Load(config.Resolve(*path))
	if err != nil {
		fmt.Fprintf(c.Stdout, "GOREPLICA UNKNOWN - %s\n", firstLine(err.Error()))
		return ExitStatus(checkUnknown)
	}
	cctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	st, err := replicator.GetStatus(cctx, replicatorOptions(cfg))
	if err != nil {
		fmt.Fprintf(c.Stdout, "GOREPLICA UNKNOWN - %s\n", firstLine(err.Error()))
		return ExitStatus(checkUnknown)
	}
	code, line := checkStatus(st, *warn, *crit)
	fmt.Fprintln(c.Stdout, line)
	return ExitStatus(code)
}

// checkStatus decides the plugin's code and its output line from a status:
// UNKNOWN when the master cannot be read; CRITICAL when a configured slave
// is not running (stopped, conflict, error, unreachable, not registered) or
// lags by crit or more; WARNING when one lags by warn or more, has an
// in-doubt transaction, or is registered but no longer configured (it
// holds back purge); else OK. The perfdata has each slave's lag and pending
// events.
func checkStatus(st *replicator.Status, warn, crit time.Duration) (int, string) {
	if !st.Reachable {
		return checkUnknown, fmt.Sprintf("GOREPLICA UNKNOWN - master %s cannot be reached: %s", st.Master, firstLine(st.Error))
	}
	code := checkOK
	var problems, perf []string
	raise := func(c int, msg string) {
		code = max(code, c)
		problems = append(problems, msg)
	}
	for _, s := range st.Slaves {
		lag := time.Duration(s.LagSeconds * float64(time.Second))
		switch {
		case !s.Configured:
			raise(checkWarning, fmt.Sprintf("slave %s is registered but not configured (holds back purge)", s.Name))
		case s.State != replicator.StateRunning:
			msg := fmt.Sprintf("slave %s %s", s.Name, s.State)
			if s.LastError != "" {
				msg += ": " + firstLine(s.LastError)
			}
			raise(checkCritical, msg)
		case lag >= crit:
			raise(checkCritical, fmt.Sprintf("slave %s lag %s", s.Name, lag.Round(100*time.Millisecond)))
		case lag >= warn:
			raise(checkWarning, fmt.Sprintf("slave %s lag %s", s.Name, lag.Round(100*time.Millisecond)))
		}
		if s.Configured && len(s.InDoubt) > 0 {
			raise(checkWarning, fmt.Sprintf("slave %s has %d in-doubt prepared transactions", s.Name, len(s.InDoubt)))
		}
		label := perfLabel(s.Name)
		perf = append(perf,
			fmt.Sprintf("%s=%ss;%s;%s;0", perfQuote("lag_"+label), trimFloat(s.LagSeconds), trimFloat(warn.Seconds()), trimFloat(crit.Seconds())),
			fmt.Sprintf("%s=%d;;;0", perfQuote("pending_"+label), s.PendingEvents))
	}
	summary := fmt.Sprintf("%d slaves replicating from %s", len(st.Slaves), st.Master)
	if len(problems) > 0 {
		summary = strings.Join(problems, "; ")
	}
	return code, fmt.Sprintf("GOREPLICA %s - %s | %s", checkLabels[code], summary, strings.Join(perf, " "))
}

// perfLabel is a slave's name as a perfdata label: '=' and quotes are not
// allowed in one.
func perfLabel(name string) string {
	return strings.NewReplacer("=", "_", "'", "_", "|", "_").Replace(name)
}

// perfQuote quotes a label that holds a space, as the guidelines ask.
func perfQuote(label string) string {
	if strings.ContainsAny(label, " \t") {
		return "'" + label + "'"
	}
	return label
}

// trimFloat prints f with at most three decimals and no trailing zeros.
func trimFloat(f float64) string {
	s := strings.TrimRight(fmt.Sprintf("%.3f", f), "0")
	return strings.TrimSuffix(s, ".")
}

func firstLine(s string) string {
	first, _, _ := strings.Cut(s, "\n")
	return first
}
