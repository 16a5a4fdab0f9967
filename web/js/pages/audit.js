// The audit log: the hash-chained trail of key uses and management changes, with filters, and
// a check of the chain.
import { API_VERSIONS, arm } from "../api.js";
import { busy, field, h, input, section, select, table } from "../ui.js";

export async function auditPage() {
  const operation = input({ name: "audit-operation", placeholder: "KeyUnwrap" });
  const resource = input({ name: "audit-resource", placeholder: "/subscriptions/…/vaults/myvault" });
  const result = select([{ value: "", label: "Any" }, "Success", "Failure"].map((o) => (typeof o === "string" ? { value: o, label: o } : o)), { name: "audit-result" });
  const top = input({ type: "number", name: "audit-top", min: 1, max: 1000, value: 50 });
  const submit = h("button", { type: "submit" }, "Search");
  const verify = h("button", { type: "button", class: "secondary" }, "Verify the hash chain");
  const verified = h("p", { "aria-live": "polite" });
  const results = h("div");

  async function search() {
    const params = new URLSearchParams({ top: top.value || "50" });
    if (operation.value.trim()) params.set("operation", operation.value.trim());
    if (resource.value.trim()) params.set("resourceId", resource.value.trim());
    if (result.value) params.set("result", result.value);
    const page = await arm("GET", `~/providers/Microsoft.KeyFoundry/auditEvents?${params}`, undefined, API_VERSIONS.audit);
    results.replaceChildren(table(["Time", "Operation", "Caller", "Resource", "Key", "Result", "Status", "Detail"], (page.value ?? []).map((e) => [
      e.time, e.operationName, h("code", {}, e.callerObjectId), h("code", {}, e.resourceId), h("code", {}, e.keyId ?? ""),
      e.result, String(e.status ?? ""), e.detail ?? "",
    ]), "Events, newest first"));
  }
  const form = h("form", {
    onsubmit: (event) => {
      event.preventDefault();
      busy(submit, search);
    },
  }, field("Operation", operation), field("Resource id (prefix)", resource), field("Result", result), field("Most events", top), submit);
  verify.addEventListener("click", () => busy(verify, async () => {
    const v = await arm("GET", "~/providers/Microsoft.KeyFoundry/auditEvents/verify", undefined, API_VERSIONS.audit);
    verified.textContent = v.valid ? `The chain is intact (${v.checked} records checked).` : `The chain is broken at record ${v.firstBrokenSequence}: ${v.reason}`;
  }));
  queueMicrotask(() => busy(submit, search));
  return [h("h1", {}, "Audit log"), section("Filters", form), section("Chain", verify, verified), section("Events", results)];
}
