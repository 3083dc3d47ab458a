package printer

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Container states for the status table.
var (
	running = corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
	waiting = func(reason string) corev1.ContainerState {
		return corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason}}
	}
	terminated = func(reason string, code, signal int32) corev1.ContainerState {
		return corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: reason, ExitCode: code, Signal: signal}}
	}
)

// podWith returns a pod in phase with one container per status.
func podWith(phase corev1.PodPhase, statuses ...corev1.ContainerStatus) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: meta("default", "p", time.Hour), Status: corev1.PodStatus{Phase: phase}}
	for _, s := range statuses {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: s.Name})
	}
	p.Status.ContainerStatuses = statuses
	return p
}

// withInit adds init containers (sidecars if sidecar) with these statuses.
func withInit(p *corev1.Pod, sidecar bool, statuses ...corev1.ContainerStatus) *corev1.Pod {
	for _, s := range statuses {
		c := corev1.Container{Name: s.Name}
		if sidecar {
			c.RestartPolicy = ptr(corev1.ContainerRestartPolicyAlways)
		}
		p.Spec.InitContainers = append(p.Spec.InitContainers, c)
	}
	p.Status.InitContainerStatuses = append(p.Status.InitContainerStatuses, statuses...)
	return p
}

func withConditions(p *corev1.Pod, conds ...corev1.PodCondition) *corev1.Pod {
	p.Status.Conditions = append(p.Status.Conditions, conds...)
	return p
}

func deleted(p *corev1.Pod) *corev1.Pod {
	p.DeletionTimestamp = ptr(ago(time.Second))
	return p
}

func TestPodStatus(t *testing.T) {
	readyTrue := corev1.PodCondition{Type: corev1.PodReady, Status: corev1.ConditionTrue}
	initialized := corev1.PodCondition{Type: corev1.PodInitialized, Status: corev1.ConditionTrue}
	tests := []struct {
		name     string
		pod      *corev1.Pod
		ready    string
		status   string
		restarts string
	}{
		{
			name:  "running and ready",
			pod:   podWith(corev1.PodRunning, corev1.ContainerStatus{Name: "a", Ready: true, State: running}),
			ready: "1/1", status: "Running", restarts: "0",
		},
		{
			name:  "running, not ready",
			pod:   podWith(corev1.PodRunning, corev1.ContainerStatus{Name: "a", State: running}),
			ready: "0/1", status: "Running", restarts: "0",
		},
		{
			name:  "pending without statuses",
			pod:   podWith(corev1.PodPending),
			ready: "0/0", status: "Pending", restarts: "0",
		},
		{
			name:  "container creating",
			pod:   podWith(corev1.PodPending, corev1.ContainerStatus{Name: "a", State: waiting("ContainerCreating")}),
			ready: "0/1", status: "ContainerCreating", restarts: "0",
		},
		{
			name: "crash loop with restarts ago",
			pod: podWith(corev1.PodRunning, corev1.ContainerStatus{
				Name: "a", RestartCount: 5, State: waiting("CrashLoopBackOff"),
				LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
					ExitCode: 1, Reason: "Error", FinishedAt: ago(5 * time.Minute),
				}},
			}),
			ready: "0/1", status: "CrashLoopBackOff", restarts: "5 (5m ago)",
		},
		{
			name: "restarts without a finish time have no suffix",
			pod: podWith(corev1.PodRunning, corev1.ContainerStatus{
				Name: "a", Ready: true, RestartCount: 2, State: running,
			}),
			ready: "1/1", status: "Running", restarts: "2",
		},
		{
			name:  "error",
			pod:   podWith(corev1.PodFailed, corev1.ContainerStatus{Name: "a", State: terminated("Error", 1, 0)}),
			ready: "0/1", status: "Error", restarts: "0",
		},
		{
			name:  "completed",
			pod:   podWith(corev1.PodSucceeded, corev1.ContainerStatus{Name: "a", State: terminated("Completed", 0, 0)}),
			ready: "0/1", status: "Completed", restarts: "0",
		},
		{
			name:  "exit code without reason",
			pod:   podWith(corev1.PodFailed, corev1.ContainerStatus{Name: "a", State: terminated("", 137, 0)}),
			ready: "0/1", status: "ExitCode:137", restarts: "0",
		},
		{
			name:  "signal without reason",
			pod:   podWith(corev1.PodFailed, corev1.ContainerStatus{Name: "a", State: terminated("", 0, 9)}),
			ready: "0/1", status: "Signal:9", restarts: "0",
		},
		{
			name: "first container's state wins",
			pod: podWith(corev1.PodRunning,
				corev1.ContainerStatus{Name: "a", State: waiting("ImagePullBackOff")},
				corev1.ContainerStatus{Name: "b", State: terminated("OOMKilled", 137, 0)},
			),
			ready: "0/2", status: "ImagePullBackOff", restarts: "0",
		},
		{
			name: "completed container beside a running one, pod ready",
			pod: withConditions(podWith(corev1.PodRunning,
				corev1.ContainerStatus{Name: "a", State: terminated("Completed", 0, 0)},
				corev1.ContainerStatus{Name: "b", Ready: true, State: running},
			), readyTrue),
			ready: "1/2", status: "Running", restarts: "0",
		},
		{
			name: "completed container beside a running one, pod not ready",
			pod: podWith(corev1.PodRunning,
				corev1.ContainerStatus{Name: "a", State: terminated("Completed", 0, 0)},
				corev1.ContainerStatus{Name: "b", Ready: true, State: running},
			),
			ready: "1/2", status: "NotReady", restarts: "0",
		},
		{
			name:  "pod reason overrides phase",
			pod:   func() *corev1.Pod { p := podWith(corev1.PodFailed); p.Status.Reason = "Evicted"; return p }(),
			ready: "0/0", status: "Evicted", restarts: "0",
		},
		{
			name: "scheduling gated",
			pod: withConditions(podWith(corev1.PodPending), corev1.PodCondition{
				Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonSchedulingGated,
			}),
			ready: "0/0", status: "SchedulingGated", restarts: "0",
		},
		{
			name: "init container running",
			pod: withInit(podWith(corev1.PodPending, corev1.ContainerStatus{Name: "a", State: waiting("PodInitializing")}), false,
				corev1.ContainerStatus{Name: "i1", State: terminated("Completed", 0, 0)},
				corev1.ContainerStatus{Name: "i2", State: running},
			),
			ready: "0/1", status: "Init:1/2", restarts: "0",
		},
		{
			name: "init container waiting with PodInitializing counts as progress",
			pod: withInit(podWith(corev1.PodPending), false,
				corev1.ContainerStatus{Name: "i1", State: waiting("PodInitializing")},
			),
			ready: "0/0", status: "Init:0/1", restarts: "0",
		},
		{
			name: "init container crash loop",
			pod: withInit(podWith(corev1.PodPending, corev1.ContainerStatus{Name: "a"}), false,
				corev1.ContainerStatus{
					Name: "i1", RestartCount: 3, State: waiting("CrashLoopBackOff"),
					LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{FinishedAt: ago(10 * time.Second)}},
				},
			),
			ready: "0/1", status: "Init:CrashLoopBackOff", restarts: "3 (10s ago)",
		},
		{
			name: "init container failed",
			pod: withInit(podWith(corev1.PodFailed), false,
				corev1.ContainerStatus{Name: "i1", State: terminated("Error", 2, 0)},
			),
			ready: "0/0", status: "Init:Error", restarts: "0",
		},
		{
			name: "init container exit code",
			pod: withInit(podWith(corev1.PodFailed), false,
				corev1.ContainerStatus{Name: "i1", State: terminated("", 3, 0)},
			),
			ready: "0/0", status: "Init:ExitCode:3", restarts: "0",
		},
		{
			name: "init container signal",
			pod: withInit(podWith(corev1.PodFailed), false,
				corev1.ContainerStatus{Name: "i1", State: terminated("", 137, 9)},
			),
			ready: "0/0", status: "Init:Signal:9", restarts: "0",
		},
		{
			name: "sidecar counts as a container and its restarts stay",
			pod: withConditions(withInit(podWith(corev1.PodRunning, corev1.ContainerStatus{Name: "a", Ready: true, State: running}), true,
				corev1.ContainerStatus{
					Name: "proxy", Ready: true, Started: ptr(true), State: running, RestartCount: 1,
					LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{FinishedAt: ago(3 * time.Hour)}},
				},
			), initialized, readyTrue),
			ready: "2/2", status: "Running", restarts: "1 (3h ago)",
		},
		{
			name: "init restarts are dropped once initialized",
			pod: withConditions(withInit(podWith(corev1.PodRunning, corev1.ContainerStatus{Name: "a", Ready: true, State: running}), false,
				corev1.ContainerStatus{Name: "i1", RestartCount: 4, State: terminated("Completed", 0, 0)},
			), initialized),
			ready: "1/1", status: "Running", restarts: "0",
		},
		{
			name:  "terminating",
			pod:   deleted(podWith(corev1.PodRunning, corev1.ContainerStatus{Name: "a", Ready: true, State: running})),
			ready: "1/1", status: "Terminating", restarts: "0",
		},
		{
			name:  "deleted after completion keeps its status",
			pod:   deleted(podWith(corev1.PodSucceeded, corev1.ContainerStatus{Name: "a", State: terminated("Completed", 0, 0)})),
			ready: "0/1", status: "Completed", restarts: "0",
		},
		{
			name: "node lost",
			pod: func() *corev1.Pod {
				p := deleted(podWith(corev1.PodRunning, corev1.ContainerStatus{Name: "a", Ready: true, State: running}))
				p.Status.Reason = "NodeLost"
				return p
			}(),
			ready: "1/1", status: "Unknown", restarts: "0",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := summarizePod(tt.pod, now)
			cells := podRow(tt.pod, now)
			if got := cells[1]; got != tt.ready {
				t.Errorf("READY = %q, want %q", got, tt.ready)
			}
			if s.status != tt.status || cells[2] != tt.status {
				t.Errorf("STATUS = %q, want %q", s.status, tt.status)
			}
			if s.restarts != tt.restarts || cells[3] != tt.restarts {
				t.Errorf("RESTARTS = %q, want %q", s.restarts, tt.restarts)
			}
		})
	}
}

func TestPodWideColumns(t *testing.T) {
	p := runningPod("default", "web", "", "", time.Minute)
	p.Status.PodIPs = nil
	p.Status.PodIP = "10.244.3.3" // only the legacy field set: still shown
	p.Status.NominatedNodeName = "node-b"
	p.Spec.ReadinessGates = []corev1.PodReadinessGate{{ConditionType: "example.com/lb"}, {ConditionType: "example.com/dns"}}
	p.Status.Conditions = append(p.Status.Conditions,
		corev1.PodCondition{Type: "example.com/lb", Status: corev1.ConditionTrue},
		corev1.PodCondition{Type: "example.com/dns", Status: corev1.ConditionFalse},
	)
	cells := podRow(p, now)
	want := []string{"10.244.3.3", "<none>", "node-b", "1/2"}
	for i, w := range want {
		if got := cells[5+i]; got != w {
			t.Errorf("%s = %q, want %q", podTable.columns[5+i].header, got, w)
		}
	}
	p.Status.PodIPs = []corev1.PodIP{{IP: "10.244.3.4"}, {IP: "fd00::4"}}
	if got := podRow(p, now)[5]; got != "10.244.3.4" {
		t.Errorf("IP with podIPs = %q, want the first of them", got)
	}
}

func TestAge(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{0, "0s"},
		{119 * time.Second, "119s"},
		{150 * time.Second, "2m30s"},
		{time.Hour, "60m"},
		{5 * time.Hour, "5h"},
		{5*time.Hour + 10*time.Minute, "5h10m"},
		{49 * time.Hour, "2d1h"},
		{400 * 24 * time.Hour, "400d"},
		{-time.Hour, "<invalid>"}, // created in the future: clock skew
	}
	for _, tt := range tests {
		if got := age(ago(tt.d), now); got != tt.want {
			t.Errorf("age(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
	if got := age(metav1.Time{}, now); got != "<unknown>" {
		t.Errorf("age(zero) = %q, want <unknown>", got)
	}
}
