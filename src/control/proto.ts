/**
 * Loads proto/ambit/v1/*.proto at run time with @grpc/proto-loader and exposes the typed service
 * definitions that the server (src/control/) and the client library (src/discovery/) share.
 *
 * Invariant: PROTO_LOADER_OPTIONS matches the flags scripts/gen-proto.sh passes to
 * proto-loader-gen-types (longs as Number, enums as String, defaults, oneofs), so the generated
 * types in src/gen/ describe exactly the objects grpc-js hands us. Only types are imported from
 * src/gen/, so nothing generated is needed at run time.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { ProtoGrpcType as DiscoveryProto } from '../gen/discovery.js';
import type { ProtoGrpcType as CaProto } from '../gen/ca.js';

export const PROTO_LOADER_OPTIONS: protoLoader.Options = {
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
};

/** proto/ relative to this file: src/control/ and dist/control/ are both two levels below the package root. */
export function protoRoot(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const root = join(here, '..', '..', 'proto');
  if (!existsSync(join(root, 'ambit', 'v1', 'discovery.proto'))) {
    throw new Error(`proto files not found under ${root}; the package is incomplete (proto/ambit/v1/*.proto must ship with dist/)`);
  }
  return root;
}

let loaded: { discovery: DiscoveryProto; ca: CaProto } | undefined;

/** The loaded services, cached per process. */
export function protos(): { discovery: DiscoveryProto; ca: CaProto } {
  if (loaded === undefined) {
    const includeDirs = [protoRoot()];
    const d = protoLoader.loadSync('ambit/v1/discovery.proto', { ...PROTO_LOADER_OPTIONS, includeDirs });
    const c = protoLoader.loadSync('ambit/v1/ca.proto', { ...PROTO_LOADER_OPTIONS, includeDirs });
    loaded = {
      discovery: grpc.loadPackageDefinition(d) as unknown as DiscoveryProto,
      ca: grpc.loadPackageDefinition(c) as unknown as CaProto,
    };
  }
  return loaded;
}

export type { DiscoveryRequest__Output } from '../gen/ambit/v1/DiscoveryRequest.js';
export type { DiscoveryResponse, DiscoveryResponse__Output } from '../gen/ambit/v1/DiscoveryResponse.js';
export type { Resource, Resource__Output } from '../gen/ambit/v1/Resource.js';
export type { ResourceRef, ResourceRef__Output } from '../gen/ambit/v1/ResourceRef.js';
export type { Hello, Hello__Output } from '../gen/ambit/v1/Hello.js';
export type { SignRequest__Output } from '../gen/ambit/v1/SignRequest.js';
export type { SignResponse, SignResponse__Output } from '../gen/ambit/v1/SignResponse.js';
export type { ResourceKind } from '../gen/ambit/v1/ResourceKind.js';
export type { SubscriberKind } from '../gen/ambit/v1/SubscriberKind.js';
export type { DiscoveryClient } from '../gen/ambit/v1/Discovery.js';
export type { CertificateAuthorityClient } from '../gen/ambit/v1/CertificateAuthority.js';
