package cli

import (
	"context"
	"time"

	"github.com/goreplica/goreplica/demo"
)

// runDemo runs the demonstration of package demo. It takes no
// configuration: it starts its own servers.
func (c *CLI) runDemo(ctx context.Context, args []string) error {
	fs := c.flags()
	duration := fs.Duration("duration", 10*time.Second, "how long the write workload runs")
	clients := fs.Int("clients", 4, "concurrent writers on the master")
	if err := c.parse(fs, args, 0); err != nil {
		return err
	}
	if *clients < 1 || *duration <= 0 {
		return UsageError{Verb: "demo", Msg: "demo: --clients must be 1 or more and --duration positive"}
	}
	return demo.Run(ctx, demo.Options{Duration: *duration, Clients: *clients, TriggerSQL: c.TriggerSQL, Stdout: c.Stdout, Stderr: c.Stderr})
}
