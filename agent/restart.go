package agent

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/podnet/podnet/attach"
	"github.com/podnet/podnet/podlink"
	"github.com/podnet/podnet/stack"
)

// An agent restart loses no pod and no established flow.
//
// What a pod's connections need lives outside the agent's memory, so that an agent that dies
// (SIGKILL, a crash, a DaemonSet rollout) and the one started after it share it:
//
//   - the pod's interface is a persistent TAP (podlink.Config.Persist): it stays in the pod's
//     namespace, with its address and routes, when the agent's descriptors close; the pod's
//     kernel drops what it sends meanwhile, and TCP retransmits it;
//   - a record of each attachment (RunDir/pods/*.json: the request and the result) says which
//     interfaces to take back;
//   - the connection-tracking table is kept in RunDir/conntrack (stack.Options.ConntrackFile):
//     Service flows keep their backend, UDP flows that NetworkPolicy admitted their verdict;
//   - the WireGuard key is in StateDir, so peers know the new agent; it starts handshakes with
//     them at once (overlay.Handshake).
//
// New reserves the recorded addresses before anything can be attached. Start computes the
// Service table, policy, peers and DNS from the Source first, and then adopts the recorded
// interfaces (podlink.Adopt), so the first frame a pod sends after the restart meets the whole
// configuration. A record whose namespace or interface is gone (the pod was deleted while no
// agent ran) is dropped with its address.
//
// Connections that end in the agent itself are lost: the node's DNS server's TCP connections,
// NodePort, hostPort and Ingress connections, and pods' connections to outside the cluster
// (spliced in the netstack). Their clients see a reset or a timeout and connect again.

// podRecord is what RunDir/pods keeps of one attachment.
type podRecord struct {
	Request attach.Request `json:"request"`
	Result  attach.Result  `json:"result"`
	Queues  int            `json:"queues"`
}

// podsDir is where the attachment records are.
func (a *Agent) podsDir() string { return filepath.Join(a.runDir(), "pods") }

func (a *Agent) runDir() string {
	if a.opts.RunDir != "" {
		return a.opts.RunDir
	}
	return a.opts.StateDir
}

// recordPath is the record file of the attachment id: a hash of it, since an ID may hold any
// character.
func (a *Agent) recordPath(id string) string {
	h := sha256.Sum256([]byte(id))
	return filepath.Join(a.podsDir(), hex.EncodeToString(h[:16])+".json")
}

// writeRecord records at, atomically (write and rename).
func (a *Agent) writeRecord(at *attachment) error {
	b, err := json.Marshal(podRecord{Request: at.req, Result: at.res, Queues: len(at.devs)})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(a.podsDir(), 0o700); err != nil {
		return err
	}
	path := a.recordPath(at.req.ID)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// removeRecord removes the record of the attachment id.
func (a *Agent) removeRecord(id string) {
	if err := os.Remove(a.recordPath(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		a.log.Warn("remove attachment record", "id", id, "err", err)
	}
}

// readRecords returns the attachment records of an earlier agent, dropping files that are not
// records.
func (a *Agent) readRecords() []podRecord {
	entries, err := os.ReadDir(a.podsDir())
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			a.log.Error("read attachment records", "dir", a.podsDir(), "err", err)
		}
		return nil
	}
	var recs []podRecord
	for _, e := range entries {
		path := filepath.Join(a.podsDir(), e.Name())
		if !strings.HasSuffix(e.Name(), ".json") {
			os.Remove(path) // a write that did not finish
			continue
		}
		b, err := os.ReadFile(path)
		var r podRecord
		if err == nil {
			err = json.Unmarshal(b, &r)
		}
		if err == nil && (r.Request.ID == "" || !r.Result.IP.Is4() || a.recordPath(r.Request.ID) != path) {
			err = errors.New("not an attachment record")
		}
		if err != nil {
			a.log.Error("dropping an unreadable attachment record", "file", path, "err", err)
			os.Remove(path)
			continue
		}
		recs = append(recs, r)
	}
	return recs
}

// reserveRecorded reserves the addresses of the recorded attachments, at New, and keeps the
// records for adopt. A record whose address is not this node's (the node's range changed) is
// dropped.
func (a *Agent) reserveRecorded() {
	for _, r := range a.readRecords() {
		if err := a.pool.Reserve(r.Request.ID, r.Result.IP); err != nil {
			a.log.Error("dropping an attachment record: its address cannot be had", "id", r.Request.ID,
				"pod", r.Request.Namespace+"/"+r.Request.Name, "ip", r.Result.IP, "err", err)
			a.removeRecord(r.Request.ID)
			continue
		}
		a.recorded = append(a.recorded, r)
		a.attaching[r.Request.ID] = false // not attachable again until adopt is done with it
	}
}

// adopt takes back the interfaces of the recorded attachments and returns how many it took.
func (a *Agent) adopt() int {
	n := 0
	for _, r := range a.recorded {
		id := r.Request.ID
		at, err := a.adoptOne(r)
		a.amu.Lock()
		detached := a.attaching[id]
		delete(a.attaching, id)
		if err == nil && !detached {
			a.attached[id] = at
		}
		a.amu.Unlock()
		switch {
		case err != nil:
			a.log.Warn("an attachment of the previous agent is gone", "id", id,
				"pod", r.Request.Namespace+"/"+r.Request.Name, "netns", r.Request.NetNS, "err", err)
			a.removeRecord(id)
			a.pool.Release(id)
		case detached:
			a.release(at)
		default:
			n++
			a.log.Info("pod taken back from the previous agent", "id", id,
				"pod", r.Request.Namespace+"/"+r.Request.Name, "ip", r.Result.IP)
		}
	}
	a.recorded = nil
	return n
}

func (a *Agent) adoptOne(r podRecord) (*attachment, error) {
	devs, err := podlink.Adopt(r.Request.NetNS, podlink.Config{Name: r.Result.Interface, IP: r.Result.IP, Queues: r.Queues})
	if err != nil {
		return nil, err
	}
	ports := make([]stack.Port, len(devs))
	for i, d := range devs {
		ports[i] = d
	}
	if err := a.stack.AttachPodQueues(r.Result.IP, ports); err != nil {
		podlink.Release(devs)
		return nil, fmt.Errorf("attach to node stack: %w", err)
	}
	return &attachment{req: r.Request, ip: r.Result.IP, devs: devs, res: r.Result}, nil
}
