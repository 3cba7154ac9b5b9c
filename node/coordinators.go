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
// none; the node keeps its list). The list is checked like any input;
// the coordinator that sent it stays listed even when it names itself by
// another URL than the one dialled (a token's --url). The stream chooses
// from it from now on, the relay over TCP follows the stream to the
// sender, and the state file keeps the list, with the sender as the one
// to dial first at the next start.
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
	if list != nil {
		var err error
		if list, err = withSender(list, current); err != nil {
			e.log.Warn("the coordinator's list of coordinators is invalid; keeping the known one", "coordinator", cur, "err", err)
		} else {
			e.stream.SetCoordinators(list)
		}
	}
	if e.saveCoordinators(current, list) {
		e.relays.SetCoordinator(current.URL, control.NewHTTPClient(current.Pin))
		e.log.Info("coordinator changed", "connected", cur, "known", len(e.stream.Known()))
	}
}

// withSender checks a coordinator's list of coordinators and returns it
// with sender, the coordinator that sent it, added at the end when the
// list doesn't name it (and has room); nil and the error for a list that
// fails the checks.
func withSender(list []crypto.Coordinator, sender crypto.Coordinator) ([]crypto.Coordinator, error) {
	if err := crypto.ValidateCoordinators(list); err != nil {
		return nil, err
	}
	if slices.ContainsFunc(list, func(c crypto.Coordinator) bool { return c.URL == sender.URL }) || len(list) == crypto.MaxTokenCoordinators {
		return list, nil
	}
	return append(slices.Clone(list), sender), nil
}

// saveCoordinators writes current, as the coordinator to dial first, and
// list (nil: unchanged) to the state file when either changed; moved
// reports whether current is another coordinator than before.
func (e *Engine) saveCoordinators(current crypto.Coordinator, list []crypto.Coordinator) (moved bool) {
	e.stateMu.Lock()
	defer e.stateMu.Unlock()
	next := e.saved
	next.CoordinatorURL, next.Pin = current.URL, current.Pin
	if list != nil {
		next.Coordinators = list
	}
	moved = next.CoordinatorURL != e.saved.CoordinatorURL || next.Pin != e.saved.Pin
	if !moved && slices.Equal(next.Coordinators, e.saved.Coordinators) {
		return false
	}
	if err := saveState(e.cfg.StateDir, next); err != nil {
		e.log.Warn("keep the mesh's coordinators in the state file", "err", err)
		return moved
	}
	e.saved = next
	return moved
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
