import { useEffect, useState } from "preact/hooks";
import { api, ApiError, Campaign, Decision, errorText, Me, Wave } from "../api";
import { useLive } from "../live";
import { Members } from "./members";

/** Which actions a status allows, and what each needs of the role. */
const ACTIONS: { action: string; label: string; needs: string; when: (c: Campaign) => boolean }[] = [
  { action: "start", label: "Start", needs: "write", when: (c) => c.status === "draft" },
  { action: "approve", label: "Approve next wave", needs: "approve", when: (c) => c.awaiting_approval },
  { action: "pause", label: "Pause", needs: "write", when: (c) => c.status === "running" },
  { action: "resume", label: "Resume", needs: "write", when: (c) => c.status === "paused" },
  { action: "cancel", label: "Cancel", needs: "write", when: (c) => ["running", "paused", "scheduled"].includes(c.status) },
  { action: "abort", label: "Abort", needs: "write", when: (c) => ["running", "paused"].includes(c.status) },
];

export function CampaignPage(props: { id: string; me: Me }) {
  const [campaign, setCampaign] = useState<Campaign | null>(null);
  const [error, setError] = useState<string | null>(null);
  const load = () => {
    api<Campaign>("GET", `/campaigns/${props.id}`)
      .then((c) => { setCampaign(c); setError(null); })
      .catch((e) => setError(e instanceof ApiError ? `${e.message} (${e.code})` : String(e)));
  };
  useEffect(load, [props.id]);
  useLive(`types=Campaign,DeviceUpdate&campaign=${props.id}`, load);
  if (!campaign) return error ? <p role="alert" class="error">{error}</p> : <p class="muted">Loading…</p>;
  const act = async (action: string) => {
    try {
      setCampaign(await api<Campaign>("POST", `/campaigns/${props.id}/${action}`, action === "approve" ? undefined : {}));
      setError(null);
    } catch (e) {
      setError(e instanceof ApiError ? `${e.message} (${e.code})` : String(e));
    }
  };
  const allowed = ACTIONS.filter((a) => props.me.may.includes(a.needs) && a.when(campaign));
  const rename = async (e: Event) => {
    e.preventDefault();
    const name = String(new FormData(e.target as HTMLFormElement).get("name") ?? "").trim();
    try { setCampaign(await api<Campaign>("PATCH", `/campaigns/${props.id}`, { name })); setError(null); }
    catch (err) { setError(errorText(err)); }
  };
  const remove = async () => {
    try { await api("DELETE", `/campaigns/${props.id}`); window.location.assign("/ui/campaigns"); }
    catch (e) { setError(errorText(e)); }
  };
  return (
    <>
      <h1>{campaign.name}</h1>
      <p>
        <span class={`status ${campaign.status}`} data-testid="status">{campaign.status}</span>{" "}
        {campaign.firmware.name} {campaign.firmware.version} ({campaign.firmware.device_model}) ·{" "}
        {campaign.device_count} devices{campaign.excluded ? `, ${campaign.excluded} excluded` : ""}
        {campaign.awaiting_approval && <strong> · waiting for approval of the next wave</strong>}
      </p>
      {campaign.last_reason && <p class="reason" data-testid="reason">{campaign.last_reason}</p>}
      <div class="actions">
        {allowed.map((a) => <button key={a.action} type="button" onClick={() => act(a.action)}>{a.label}</button>)}
        {props.me.may.includes("write") && campaign.status === "draft" && <button type="button" onClick={remove}>Delete draft</button>}
      </div>
      {props.me.may.includes("write") && campaign.status === "draft" && (
        <form class="fields" onSubmit={rename} aria-label="Rename the draft">
          <label>New name <input name="name" required maxLength={200} defaultValue={campaign.name} /></label>
          <button type="submit">Rename</button>
        </form>
      )}
      {error && <p role="alert" class="error">{error}</p>}
      <h2>Waves</h2>
      {campaign.waves.length === 0 && <p class="muted">Waves are drawn when the campaign starts.</p>}
      {campaign.waves.map((w) => <WaveRow key={w.wave} wave={w} campaign={campaign} />)}
      <Members id={props.id} version={`${campaign.status}:${campaign.waves.map((w) => w.succeeded + w.failed + w.in_progress).join(",")}`} />
      <h2>Decisions</h2>
      <table>
        <thead><tr><th>#</th><th>Decision</th><th>Wave</th><th>Gate saw</th><th>By</th><th>Reason</th><th>At</th></tr></thead>
        <tbody>{campaign.decisions.map((d) => <DecisionRow key={d.sequence} d={d} />)}</tbody>
      </table>
    </>
  );
}

function WaveRow(props: { wave: Wave; campaign: Campaign }) {
  const w = props.wave;
  const size = Math.max(w.size - w.skipped, 0);
  const failed = w.failed + w.rejected + w.timed_out;
  const finished = w.succeeded + failed + w.cancelled;
  const done = size === 0 ? 100 : Math.round((finished * 100) / size);
  const failurePercent = finished === 0 ? 0 : Math.round((failed * 100) / finished);
  const threshold = props.campaign.rollout.failure_threshold_percent;
  return (
    <section class="wave" aria-label={`Wave ${w.wave + 1}`}>
      <div class="wave-head">
        <strong>Wave {w.wave + 1}</strong>
        <span data-testid={`wave-${w.wave + 1}-done`}>{done} %</span>
        <span class={failurePercent > threshold ? "error" : "muted"}>
          failures {failurePercent} % of finished (gate at {threshold} %)
        </span>
      </div>
      <div class="bar" role="progressbar" aria-valuemin={0} aria-valuemax={100} aria-valuenow={done}
        aria-label={`Wave ${w.wave + 1} progress`}>
        <span class="ok" style={{ width: `${size ? (w.succeeded * 100) / size : 0}%` }} />
        <span class="bad" style={{ width: `${size ? (failed * 100) / size : 0}%` }} />
      </div>
      <p class="muted">
        {w.succeeded} succeeded · {failed} failed · {w.in_progress} in progress · {w.assigned}/{w.size} assigned
        {w.skipped ? ` · ${w.skipped} skipped` : ""}
      </p>
    </section>
  );
}

function DecisionRow(props: { d: Decision }) {
  const d = props.d;
  const g = d.gate;
  const saw = g ? `${g.gate}: ${g.failed} failed of ${g.finished} finished, ${g.succeeded}/${g.size} succeeded (threshold ${g.threshold_percent} %)` : "";
  return (
    <tr>
      <td>{d.sequence}</td>
      <td>{d.decision}</td>
      <td>{d.wave === null ? "" : d.wave + 1}</td>
      <td>{saw}</td>
      <td>{d.actor ?? ""}</td>
      <td>{d.reason ?? ""}</td>
      <td>{new Date(d.decided_at).toLocaleString()}</td>
    </tr>
  );
}
