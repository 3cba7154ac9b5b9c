package node

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"time"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/node/control"
)

// registerRetry bounds the wait between registration attempts while the
// coordinator is unreachable.
const (
	registerRetryMin = time.Second
	registerRetryMax = 30 * time.Second
)

// ErrNeedToken means the node has never registered and has no token.
var ErrNeedToken = errors.New("this node is not registered yet: give it a join token with --token-file FILE or MESHNODE_TOKEN (create one on the coordinator with 'meshnode token create')")

func (e *Engine) register(ctx context.Context) (State, error) {
	if e.cfg.Token == "" {
		return State{}, ErrNeedToken
	}
	tok, err := crypto.ParseToken(e.cfg.Token)
	if err != nil {
		return State{}, err
	}
	name := e.cfg.Name
	if name == "" {
		name, _ = os.Hostname()
	}
	// Any of the token's coordinators registers the node (they share the
	// database): a random one first, so that new nodes spread over them,
	// then each other in turn; a full round that failed waits with
	// backoff.
	list := tok.Coordinators()
	first := rand.N(len(list))
	wait := registerRetryMin
	for attempt := 0; ; attempt++ {
		c := list[(first+attempt)%len(list)]
		e.progress("registering with the coordinator at " + c.URL)
		resp, err := control.Register(ctx, control.NewHTTPClient(c.Pin), c, e.cfg.Token, e.priv, name)
		if err == nil {
			st := State{
				CoordinatorURL: c.URL,
				Pin:            c.Pin,
				Coordinators:   list,
				CoordinatorKey: resp.CoordinatorKey,
				Self:           resp.Self,
				NetworkV4:      resp.NetworkV4,
				NetworkV6:      resp.NetworkV6,
			}
			if err := saveState(e.cfg.StateDir, st); err != nil {
				return st, err
			}
			e.log.Info("registered", "name", st.Self.Name, "addresses", st.Self.Addresses, "coordinator", c.URL)
			return st, nil
		}
		if control.IsPermanent(err) {
			return State{}, err
		}
		if (attempt+1)%len(list) != 0 {
			e.log.Warn("coordinator unreachable; trying the next one of the token", "url", c.URL, "err", err)
			continue
		}
		// Full jitter spreads a fleet's retries after a coordinator outage.
		d := wait/2 + rand.N(wait)
		e.log.Warn("coordinator unreachable; retrying", "url", c.URL, "err", err, "in", d.Round(time.Millisecond))
		e.progress(fmt.Sprintf("coordinator unreachable (%v); retrying in %v", err, d.Round(time.Second)))
		select {
		case <-ctx.Done():
			return State{}, fmt.Errorf("registering: %w (last error: %v)", ctx.Err(), err)
		case <-time.After(d):
		}
		wait = min(2*wait, registerRetryMax)
	}
}
