//! The `scale` subresource: an `autoscaling/v1 Scale` view of a workload's replicas, writable by PUT and PATCH
//! (`kubectl scale` sends a merge patch).

use std::sync::Arc;

use http::{Method, Request, Response};
use hyper::body::Incoming;
use serde_json::{Value, json};

use crate::apierror::{ApiError, ApiResult};
use crate::fieldmanager::Scope;
use crate::meta;
use crate::patch;
use crate::registry::ResourceDef;
use crate::selector;
use crate::server::{self, Body, Ctx, Query, Target};
use crate::store::{PatchBody, WriteOpts};

fn at<'a>(o: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(o, |cur, k| cur.get(k))
}

fn set_at(o: &mut Value, path: &[String], v: Value) {
    let mut cur = o;
    for (i, k) in path.iter().enumerate() {
        if !cur.is_object() {
            *cur = json!({});
        }
        let m = cur.as_object_mut().expect("object");
        if i + 1 == path.len() {
            m.insert(k.clone(), v);
            return;
        }
        cur = m.entry(k.clone()).or_insert_with(|| json!({}));
    }
}

/// The Scale object for a workload.
fn scale_of(def: &ResourceDef, o: &Value) -> Value {
    let sd = def.scale.as_ref().expect("scale subresource");
    let spec = at(o, &sd.spec_replicas)
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let status = at(o, &sd.status_replicas)
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let sel = sd
        .label_selector
        .as_ref()
        .and_then(|p| at(o, p))
        .map(|s| match s {
            Value::String(s) => s.clone(),
            other => selector::from_label_selector_object(other)
                .map(|ls| ls.to_string())
                .unwrap_or_default(),
        })
        .unwrap_or_default();
    let mut status_obj = json!({"replicas": status});
    if !sel.is_empty() {
        status_obj["selector"] = json!(sel);
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta::name(o),
            "namespace": meta::namespace(o),
            "uid": meta::uid(o),
            "resourceVersion": meta::str_field(o, "resourceVersion"),
            "creationTimestamp": meta::str_field(o, "creationTimestamp"),
        },
        "spec": {"replicas": spec},
        "status": status_obj,
    })
}

pub(crate) async fn handle(
    ctx: &Arc<Ctx>,
    req: Request<Incoming>,
    t: &Target,
    q: &Query,
) -> ApiResult<Response<Body>> {
    let ns = t.ns.clone().unwrap_or_default();
    let name = t.name.clone().unwrap_or_default();
    let method = req.method().clone();
    if method == Method::GET {
        let o = ctx.store.lock().get(&t.def, &ns, &name)?;
        return Ok(server::json_response(200, &scale_of(&t.def, &o)));
    }
    if method != Method::PUT && method != Method::PATCH {
        return Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        ));
    }
    let ct = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    let manager = q
        .get("fieldManager")
        .filter(|m| !m.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| {
            req.headers()
                .get(http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .and_then(|u| u.split('/').next())
                .unwrap_or("unknown")
                .to_string()
        });
    let dry_run = q.get("dryRun") == Some("All");
    let body = http_body_util::BodyExt::collect(req.into_body())
        .await
        .map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))?
        .to_bytes();
    let def = t.def.clone();
    let out = ctx.store.write(|g| -> ApiResult<Value> {
        let cur = g.get(&def, &ns, &name)?;
        let mut scale = scale_of(&def, &cur);
        if method == Method::PUT {
            let new: Value = serde_json::from_slice(&body)
                .map_err(|e| ApiError::bad_request(format!("invalid Scale: {e}")))?;
            let rv = new
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .unwrap_or("");
            if !rv.is_empty() && rv != meta::str_field(&cur, "resourceVersion") {
                return Err(ApiError::modified(&def, &name));
            }
            scale = new;
        } else {
            match server::patch_body(&ct, &body)? {
                PatchBody::Merge(p) | PatchBody::Apply(p) => patch::merge_patch(&mut scale, &p),
                PatchBody::Strategic(p) => patch::strategic_merge_patch(&mut scale, &p)
                    .map_err(|e| ApiError::unprocessable(format!("{e:?}")))?,
                PatchBody::Json(ops) => patch::json_patch(&mut scale, &ops)
                    .map_err(|e| ApiError::unprocessable(format!("{e:?}")))?,
            }
        }
        let replicas = scale
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if replicas < 0 {
            return Err(ApiError::invalid(
                "Scale",
                "autoscaling",
                &name,
                &[(
                    "spec.replicas".into(),
                    "FieldValueInvalid",
                    format!("Invalid value: {replicas}: must be greater than or equal to 0"),
                )],
            ));
        }
        let mut new = (*cur).clone();
        let sd = def.scale.as_ref().expect("scale subresource");
        set_at(&mut new, &sd.spec_replicas, json!(replicas));
        let opts = WriteOpts {
            dry_run,
            manager: manager.clone(),
            force: false,
        };
        let updated = g.replace(&def, &ns, &name, new, Scope::Scale, &opts)?;
        Ok(scale_of(&def, &updated))
    })?;
    Ok(server::json_response(200, &out))
}
