package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/goreplica/goreplica/config"
)

// configList is the value of run's -c flag: one or more configuration files.
type configList []string

func (l *configList) String() string { return fmt.Sprint([]string(*l)) }

func (l *configList) Set(v string) error {
	*l = append(*l, v)
	return nil
}

// daemons runs one daemon per configuration in this process, as separate
// daemons would run (each its own master, slaves, mail and metrics), until
// ctx is cancelled or one of them fails, which stops the others. The log
// goes where the first configuration's [log] section says, each line
// naming its master. Every configuration is loaded and checked before any
// daemon starts, and ready is called once all of them run.
func (c *CLI) daemons(ctx context.Context, paths []string, stderr io.Writer, service string, ready func()) error {
	var cfgs []*config.Config
	var errs []error
	masters := map[string]string{}
	for _, p := range paths {
		cfg, err := config.Load(config.Resolve(p))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if prev, dup := masters[cfg.Master.Name]; dup {
			errs = append(errs, fmt.Errorf("config %s: master %s is also the master of %s: one configuration per master (list its slaves in one file)", cfg.Path, cfg.Master.Name, prev))
		}
		masters[cfg.Master.Name] = cfg.Path
		cfgs = append(cfgs, cfg)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	logger, closeLog, err := newLogger(cfgs[0].Log, stderr, service)
	if err != nil {
		return err
	}
	defer closeLog()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var readyWG sync.WaitGroup
	errc := make(chan error, len(cfgs))
	for _, cfg := range cfgs {
		wg.Add(1)
		readyWG.Add(1)
		go func() {
			defer wg.Done()
			var once sync.Once
			done := func() { once.Do(readyWG.Done) }
			defer done()
			err := c.daemon(ctx, cfg, logger.With("master", cfg.Master.Name), done)
			if err != nil {
				errc <- fmt.Errorf("config %s: %w", cfg.Path, err)
				cancel()
			}
		}()
	}
	go func() {
		readyWG.Wait()
		if ctx.Err() == nil {
			ready()
		}
	}()
	wg.Wait()
	close(errc)
	for err := range errc {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
