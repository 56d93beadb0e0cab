//! API Gateway: each service's HTTP and WebSocket APIs, and the routes, integrations and
//! permissions of the functions that serve them.

use serde_json::json;

use topology::{Route, camel};

use super::Synth;

impl Synth<'_> {
    /// The HTTP API's integration, routes and invoke permission for the function `id`.
    pub(super) fn http_routes(&mut self, at: usize, service: &str, id: &str, routes: &[Route]) {
        self.http_api(at, service);
        let integration = format!("{id}Integration");
        self.stacks[at].resource(
            integration.clone(),
            "AWS::ApiGatewayV2::Integration",
            json!({
                "ApiId": { "Ref": "HttpApi" },
                "IntegrationType": "AWS_PROXY",
                "IntegrationUri": { "Fn::GetAtt": [id, "Arn"] },
                "PayloadFormatVersion": "2.0",
            }),
        );
        for route in routes {
            let stem: String = route
                .path
                .split(|c: char| !c.is_ascii_alphanumeric())
                .map(camel)
                .collect();
            let method = camel(&route.method.to_string().to_ascii_lowercase());
            self.stacks[at].resource(
                format!("{id}Route{method}{stem}"),
                "AWS::ApiGatewayV2::Route",
                json!({
                    "ApiId": { "Ref": "HttpApi" },
                    "RouteKey": route.key(),
                    "Target": { "Fn::Sub": format!("integrations/${{{integration}}}") },
                }),
            );
        }
        self.stacks[at].resource(
            format!("{id}ApiPermission"),
            "AWS::Lambda::Permission",
            json!({
                "Action": "lambda:InvokeFunction",
                "FunctionName": { "Ref": id },
                "Principal": "apigateway.amazonaws.com",
                "SourceArn": { "Fn::Sub": "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${HttpApi}/*" },
            }),
        );
    }

    /// The WebSocket API's integration, routes (with a route response for two-way routes)
    /// and invoke permission for the function `id`.
    pub(super) fn websocket_routes(
        &mut self,
        at: usize,
        service: &str,
        id: &str,
        routes: &[String],
    ) {
        self.websocket_api(at, service);
        let integration = format!("{id}WsIntegration");
        self.stacks[at].resource(
            integration.clone(),
            "AWS::ApiGatewayV2::Integration",
            json!({
                "ApiId": { "Ref": "WebSocketApi" },
                "IntegrationType": "AWS_PROXY",
                "IntegrationUri": { "Fn::Sub": format!(
                    "arn:${{AWS::Partition}}:apigateway:${{AWS::Region}}:lambda:path/2015-03-31/functions/${{{id}.Arn}}/invocations"
                ) },
            }),
        );
        for key in routes {
            let stem: String = key
                .split(|c: char| !c.is_ascii_alphanumeric())
                .map(camel)
                .collect();
            let route = format!("{id}WsRoute{stem}");
            let mut props = json!({
                "ApiId": { "Ref": "WebSocketApi" },
                "RouteKey": key,
                "Target": { "Fn::Sub": format!("integrations/${{{integration}}}") },
            });
            // Two-way routes: what the function returns is sent to the client.
            if key != "$connect" && key != "$disconnect" {
                props["RouteResponseSelectionExpression"] = json!("$default");
                self.stacks[at].resource(
                    format!("{route}Response"),
                    "AWS::ApiGatewayV2::RouteResponse",
                    json!({
                        "ApiId": { "Ref": "WebSocketApi" },
                        "RouteId": { "Ref": route },
                        "RouteResponseKey": "$default",
                    }),
                );
            }
            self.stacks[at].resource(route, "AWS::ApiGatewayV2::Route", props);
        }
        self.stacks[at].resource(
            format!("{id}WsPermission"),
            "AWS::Lambda::Permission",
            json!({
                "Action": "lambda:InvokeFunction",
                "FunctionName": { "Ref": id },
                "Principal": "apigateway.amazonaws.com",
                "SourceArn": { "Fn::Sub": "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${WebSocketApi}/*" },
            }),
        );
    }

    /// The service's WebSocket API (routes selected on `$request.body.action`) and its
    /// auto-deployed stage named after the fleet's stage, once per stack.
    fn websocket_api(&mut self, at: usize, service: &str) {
        if self.stacks[at].has("WebSocketApi") {
            return;
        }
        let name = self.names.websocket_api(service);
        let stage = self.names.stage().as_str().to_owned();
        let stack = &mut self.stacks[at];
        stack.resource(
            "WebSocketApi".into(),
            "AWS::ApiGatewayV2::Api",
            json!({
                "Name": name,
                "ProtocolType": "WEBSOCKET",
                "RouteSelectionExpression": "$request.body.action",
            }),
        );
        stack.resource(
            "WebSocketApiStage".into(),
            "AWS::ApiGatewayV2::Stage",
            json!({ "ApiId": { "Ref": "WebSocketApi" }, "StageName": stage, "AutoDeploy": true }),
        );
        stack.export(
            "WebSocketApiEndpoint".into(),
            json!({ "Fn::Sub": format!("wss://${{WebSocketApi}}.execute-api.${{AWS::Region}}.amazonaws.com/{stage}") }),
        );
    }

    /// The service's HTTP API and its auto-deployed `$default` stage, once per stack.
    fn http_api(&mut self, at: usize, service: &str) {
        if self.stacks[at].has("HttpApi") {
            return;
        }
        let name = self.names.http_api(service);
        let stack = &mut self.stacks[at];
        stack.resource(
            "HttpApi".into(),
            "AWS::ApiGatewayV2::Api",
            json!({ "Name": name, "ProtocolType": "HTTP" }),
        );
        stack.resource(
            "HttpApiDefaultStage".into(),
            "AWS::ApiGatewayV2::Stage",
            json!({ "ApiId": { "Ref": "HttpApi" }, "StageName": "$default", "AutoDeploy": true }),
        );
        stack.export(
            "HttpApiEndpoint".into(),
            json!({ "Fn::GetAtt": ["HttpApi", "ApiEndpoint"] }),
        );
    }
}
