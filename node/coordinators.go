package node

import (
	"net/http"
	"slices"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/node/control"
)

// The mesh's coordinators: the node registers with any of its token's,
// keeps the list each welcome carries in its state file, and its stream
// fails over among them (control.Stream).

// coordinators is every coordinator the state names, the one the node
// last used first (a state written before the list existed names one).
func (s State) coordinators() []crypto.Coordinator {
	out := []crypto.Coordinator{{URL: s.CoordinatorURL, Pin: s.Pin}}
	for _, c := range s.Coordinators {
		if c.URL != s.CoordinatorURL {
			out = append(out, c)
		}
	}
	return out
}

// heardCoordinators takes the list of coordinators of each welcome and of
// a delta that changed it (nil: an older coordinator's welcome, which has
// none; the node keeps its list). The
// list is checked like any input; the coordinator that sent it stays
// listed even when it names itself by another URL than the one dialled
// (a token's --url). The stream chooses from it from now on, the relay
// over TCP follows the stream to the sender, and the state file keeps
// the list, with the sender as the one to dial first at the next start.
func (e *Engine) heardCoordinators(list []crypto.Coordinator) {
	cur, _ := e.stream.Current()
	current := crypto.Coordinator{}
	for _, c := range e.stream.Known() {
		if c.URL == cur {
			current = c
		}
	}
	if current.URL == "" {
		return
	}
	e.relays.SetCoordinator(current.URL, control.NewHTTPClient(current.Pin))
	if list != nil {
		if err := crypto.ValidateCoordinators(list); err != nil {
			e.log.Warn("the coordinator's list of coordinators is invalid; keeping the known one", "coordinator", cur, "err", err)
			list = nil
		}
	}
	if list != nil {
		if !slices.ContainsFunc(list, func(c crypto.Coordinator) bool { return c.URL == cur }) && len(list) < crypto.MaxTokenCoordinators {
			list = append(slices.Clone(list), current)
		}
		e.stream.SetCoordinators(list)
	}
	e.stateMu.Lock()
	defer e.stateMu.Unlock()
	next := e.saved
	next.CoordinatorURL, next.Pin = current.URL, current.Pin
	if list != nil {
		next.Coordinators = list
	}
	if next.CoordinatorURL == e.saved.CoordinatorURL && next.Pin == e.saved.Pin && slices.Equal(next.Coordinators, e.saved.Coordinators) {
		return
	}
	if err := saveState(e.cfg.StateDir, next); err != nil {
		e.log.Warn("keep the mesh's coordinators in the state file", "err", err)
		return
	}
	e.saved = next
	e.log.Info("coordinators of the mesh", "known", len(e.stream.Known()), "connected", cur)
}

// streamClients makes the stream's HTTP client for a coordinator's pin:
// it leaves from the TCP punch port when there is one (so the coordinator
// sees this node's public TCP mapping) and times each connect for the
// relay client.
func (e *Engine) streamClients(punchPort uint16) func(pin string) *http.Client {
	return func(pin string) *http.Client {
		hc := control.NewHTTPClient(pin)
		t := hc.Transport.(*http.Transport)
		if punchPort != 0 {
			t.DialContext = dialFrom(punchPort)
			t.MaxConnsPerHost = 1
		}
		t.DialContext = timedDial(t.DialContext, e.relays.SetCoordinatorRTT)
		return hc
	}
}
