-- Argo CD health check for milvusdm.io/MilvusMigration.
-- Installed through argocd-cm: resource.customizations.health.milvusdm.io_MilvusMigration
local hs = {status = "Progressing", message = "Waiting for the milvusdm operator"}
if obj.status == nil then
  return hs
end
local generation = obj.metadata and obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end
local message = ""
if obj.status.conditions ~= nil then
  for _, condition in ipairs(obj.status.conditions) do
    if condition.type == "Progressing" and condition.message ~= nil then
      message = condition.message
    end
  end
end
local phase = obj.status.phase
if phase == "Succeeded" then
  hs.status = "Healthy"
  hs.message = obj.status.verified and ("Copied and verified: " .. tostring(obj.status.verified)) or message
elseif phase == "Failed" then
  hs.status = "Degraded"
  hs.message = obj.status.message or message
elseif phase == "Suspended" then
  hs.status = "Suspended"
  hs.message = message
elseif phase == "Running" or phase == "Pending" then
  hs.status = "Progressing"
  if obj.status.progress ~= nil then
    hs.message = phase .. ": " .. tostring(obj.status.progress) .. " (" .. tostring(obj.status.rowsCopied or 0) .. " rows)"
  else
    hs.message = phase .. ": " .. message
  end
end
return hs
