import { useEffect, useRef, useState } from "preact/hooks";
import { useLocation } from "preact-iso";
import { api, Campaign, errorText, Firmware, Page } from "../api";

interface Preview {
  seed: string;
  updating: number;
  members: number;
  not_members: number;
  excluded_by_reason: Record<string, number>;
  excluded: { device_id: string; reason: string; message: string; wave?: number }[];
  waves: { wave: number; members: string[]; skipped: number; starts_at: string | null; gate_decided_at: string | null; awaits_approval: boolean; failed: number }[];
  forecast: { outcome: { kind: string; reason?: { wave: number; gate: string; failed: number; finished: number } }; ended_at: string | null; duration_secs: number | null };
}

/** The form as the API's create body (also the preview's). */
function body(form: HTMLFormElement) {
  const data = new FormData(form);
  const text = (name: string) => String(data.get(name) ?? "").trim();
  const list = (name: string) => text(name).split(",").map((s) => s.trim()).filter(Boolean);
  const number = (name: string) => (text(name) === "" ? undefined : Number(text(name)));
  const waves = list("waves").map((w) => (w.endsWith("%") ? { percent: Number(w.slice(0, -1)) } : { count: Number(w) }));
  const filter = text("model") || list("tags").length
    ? { device_model: text("model") || undefined, tags: list("tags") } : undefined;
  return {
    name: text("name"),
    firmware_id: text("firmware_id"),
    target: { device_ids: list("device_ids"), filter },
    rollout: {
      waves,
      failure_threshold_percent: number("failure_threshold_percent"),
      success_threshold_percent: number("success_threshold_percent"),
      max_per_minute: number("max_per_minute"),
      after_success: data.get("approve") ? "pause" : "next",
      action_type: text("action_type") || "forced",
      maintenance_window: text("window_start")
        ? { start: text("window_start"), duration_minutes: number("window_minutes") ?? 60, utc_offset: text("window_offset") || "+00:00" }
        : undefined,
    },
  };
}

export function NewCampaign() {
  const { route } = useLocation();
  const [firmware, setFirmware] = useState<Firmware[]>([]);
  const [preview, setPreview] = useState<Preview | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [matching, setMatching] = useState<string | null>(null);
  const typing = useRef<number | undefined>(undefined);
  useEffect(() => {
    api<Page<Firmware>>("GET", "/firmware?page_size=200")
      .then((p) => setFirmware(p.items.filter((f) => f.status === "active"))).catch((e) => setError(errorText(e)));
  }, []);
  const form = () => document.getElementById("new-campaign") as HTMLFormElement;
  // A live count as the target changes: the preview's numbers, nothing written.
  const recount = () => {
    clearTimeout(typing.current);
    typing.current = window.setTimeout(async () => {
      const b = body(form());
      if (!b.firmware_id || (!b.target.device_ids.length && !b.target.filter)) { setMatching(null); return; }
      try {
        const p = await api<Preview>("POST", "/campaigns/preview", { ...b, name: undefined });
        const left = Object.entries(p.excluded_by_reason).map(([r, n]) => `${n} ${r}`).join(", ");
        setMatching(`${p.updating} devices match${left ? `; left out: ${left}` : ""}`);
      } catch (e) { setMatching(errorText(e)); }
    }, 400);
  };
  const doPreview = async () => {
    if (!form().reportValidity()) return;
    try {
      setPreview(await api<Preview>("POST", "/campaigns/preview", { ...body(form()), assume: { failure_percent: Number((document.getElementById("assume") as HTMLInputElement).value || 0) } }));
      setError(null);
    } catch (e) { setError(errorText(e)); setPreview(null); }
  };
  const create = async (e: Event) => {
    e.preventDefault();
    try {
      const created = await api<Campaign>("POST", "/campaigns", body(form()));
      route(`/ui/campaigns/${created.id}`);
    } catch (err) { setError(errorText(err)); }
  };
  return (
    <>
      <h1>New campaign</h1>
      <form id="new-campaign" class="panel" onSubmit={create} onInput={recount} onChange={recount}>
        <div class="fields">
          <label>Name <input name="name" required maxLength={200} /></label>
          <label>Firmware
            <select name="firmware_id" required>
              <option value="">choose…</option>
              {firmware.map((f) => <option key={f.id} value={f.id}>{f.name} {f.version} ({f.device_model})</option>)}
            </select>
          </label>
          <label>Device model (filter) <input name="model" /></label>
          <label>Tags (filter, all of) <input name="tags" placeholder="eu, plant-7" /></label>
          <label>Device ids <input name="device_ids" placeholder="gw-0001, gw-0002" /></label>
          <label>Waves <input name="waves" required defaultValue="10%,50%,100%" pattern="\s*\d+%?(\s*,\s*\d+%?)*\s*" title="e.g. 5,25%,100%" /></label>
          <label>Failure gate (%) <input name="failure_threshold_percent" type="number" min={0} max={100} defaultValue="20" /></label>
          <label>Success needed (%) <input name="success_threshold_percent" type="number" min={0} max={100} defaultValue="100" /></label>
          <label>Per minute at most <input name="max_per_minute" type="number" min={1} /></label>
          <label><input name="approve" type="checkbox" /> Wait for approval after each wave</label>
          <label>Action type
            <select name="action_type"><option value="forced">forced (install now)</option><option value="soft">soft (device chooses)</option></select>
          </label>
          <label>Window opens (HH:MM) <input name="window_start" pattern="\d{2}:\d{2}" placeholder="22:00" /></label>
          <label>Window minutes <input name="window_minutes" type="number" min={1} max={1440} placeholder="240" /></label>
          <label>Window UTC offset <input name="window_offset" pattern="[+-]\d{2}:\d{2}" placeholder="+01:00" /></label>
          <label>Assume failing (%) for the preview <input id="assume" type="number" min={0} max={100} defaultValue="0" /></label>
        </div>
        {matching && <p role="status" data-testid="matching">{matching}</p>}
        <button type="button" onClick={doPreview}>Preview</button>
        <button type="submit">Create draft</button>
      </form>
      {error && <p role="alert" class="error">{error}</p>}
      {preview && <PreviewView p={preview} />}
    </>
  );
}

function PreviewView(props: { p: Preview }) {
  const p = props.p;
  const o = p.forecast.outcome;
  const outcome = o.kind === "completed" ? `completes${p.forecast.duration_secs !== null ? ` in ${Math.round(p.forecast.duration_secs / 60)} min` : ""}`
    : o.kind === "unfinished" ? "still running after a year"
    : `${o.kind} at wave ${(o.reason?.wave ?? 0) + 1} (${o.reason?.gate}: ${o.reason?.failed} of ${o.reason?.finished} failed)`;
  return (
    <section class="panel" aria-label="Preview" data-testid="preview">
      <h2>Preview</h2>
      <p><strong>{p.updating}</strong> devices would be updated, {p.members} drawn into waves, {p.not_members} named but not members. The forecast {outcome}.</p>
      <table>
        <thead><tr><th>Wave</th><th>Members</th><th>Skipped</th><th>Starts</th><th>Gate decides</th><th>Approval</th></tr></thead>
        <tbody>{p.waves.map((w) => (
          <tr key={w.wave}><td>{w.wave + 1}</td><td>{w.members.length}</td><td>{w.skipped}</td>
            <td>{w.starts_at ? new Date(w.starts_at).toLocaleString() : "not reached"}</td>
            <td>{w.gate_decided_at ? new Date(w.gate_decided_at).toLocaleString() : ""}</td>
            <td>{w.awaits_approval ? "needed" : ""}</td></tr>
        ))}</tbody>
      </table>
      {Object.keys(p.excluded_by_reason).length > 0 && (
        <table>
          <thead><tr><th>Left out because</th><th>Devices</th></tr></thead>
          <tbody>{Object.entries(p.excluded_by_reason).map(([r, n]) => <tr key={r}><td>{r}</td><td>{n}</td></tr>)}</tbody>
        </table>
      )}
    </section>
  );
}
