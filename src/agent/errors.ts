/**
 * Errors of the node agent. Stable codes (`AMBIT_ERR_AGENT_*`); messages say what an operator
 * should check. Errors from the subsystems the agent drives (capture, tunnel, identity, discovery)
 * keep their own codes and are wrapped only where the agent adds context.
 */
import { AmbitError } from '../util/errors.js';

/** Bad agent options or environment (missing file, bad port, bad address). */
export class AgentConfigError extends AmbitError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('AMBIT_ERR_AGENT_CONFIG', message, options);
    this.name = 'AgentConfigError';
  }
}

/** The view holds a resource the agent cannot use (it is skipped, and this says why). */
export class AgentViewError extends AmbitError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('AMBIT_ERR_AGENT_VIEW', message, options);
    this.name = 'AgentViewError';
  }
}

/** A captured connection has no route: unknown original destination, or a VIP port not served. */
export class NoRouteError extends AmbitError {
  constructor(message: string) {
    super('AMBIT_ERR_AGENT_NO_ROUTE', message);
    this.name = 'NoRouteError';
  }
}
